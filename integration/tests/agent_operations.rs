//! Operating the agent, in the guest: `ipvs-agent list` against `ipvsadm`
//! in each mode, and `cleanup` / `run --cleanup` removing only what the
//! agent owns.

use std::process::Command;
use std::time::Duration;

use integration::agent::{agent_binary, Agent};
use integration::node::{fresh_node, kube_ipvs0_addresses, NODE_ARGS, NODE_IP};
use integration::{example, ipvsadm, ipvsadm_restore};

const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `ipvs-agent ARGS...`; fails the test unless it succeeds; stdout.
fn agent_command(args: &[&str]) -> String {
    let output = Command::new(agent_binary())
        .args(args)
        .output()
        .expect("run ipvs-agent");
    assert!(
        output.status.success(),
        "ipvs-agent {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// A varied table: TCP/UDP/SCTP, IPv6, fwmark, persistence with a
/// netmask, every forwarding method, weights and thresholds.
const VARIED_RULES: &str = "\
-A -t 10.96.0.10:53 -s rr
-a -t 10.96.0.10:53 -r 10.244.1.2:53 -m -w 1
-a -t 10.96.0.10:53 -r 10.244.2.3:53 -m -w 0
-A -u 10.96.0.10:53 -s wrr
-a -u 10.96.0.10:53 -r 10.244.1.2:53 -m -w 3 -x 100 -y 10
-A --sctp-service 10.96.0.20:3868 -s lc
-a --sctp-service 10.96.0.20:3868 -r 10.244.3.4:3868 -g -w 1
-A -t [fd00::10]:443 -s sh -p 600 -M 64
-a -t [fd00::10]:443 -r [fd00:1::5]:8443 -m -w 1
-A -f 7 -s rr
-a -f 7 -r 10.244.4.5:0 -i -w 2
-A -t 192.168.122.10:30080 -s rr -p 10800
-a -t 192.168.122.10:30080 -r 10.244.1.2:8080 -m -w 1
";

/// `ipvs-agent list` prints what `ipvsadm` prints, byte for byte, in
/// each mode.
#[test]
fn list_prints_what_ipvsadm_prints() {
    fresh_node();
    ipvsadm_restore(VARIED_RULES);
    for (ours, theirs) in [
        (vec!["list", "-n"], vec!["-Ln"]),
        (vec!["list", "-n", "--stats"], vec!["-Ln", "--stats"]),
        (vec!["list", "-n", "--rate"], vec!["-Ln", "--rate"]),
        (
            vec!["list", "-n", "--stats", "--exact"],
            vec!["-Ln", "--stats", "--exact"],
        ),
        (vec!["list", "--save"], vec!["-Sn"]),
    ] {
        let expected = ipvsadm(&theirs);
        assert_eq!(
            agent_command(&ours),
            expected,
            "ipvs-agent {} vs ipvsadm {}",
            ours.join(" "),
            theirs.join(" ")
        );
    }
}

/// Foreign virtual servers the cleanup must leave: a VIP not on
/// kube-ipvs0, a node address outside the NodePort range, an excluded
/// CIDR, a fwmark service.
const FOREIGN_RULES: &str = "\
-A -t 10.0.0.1:80 -s rr
-a -t 10.0.0.1:80 -r 10.244.1.2:80 -m -w 1
-A -t 192.168.122.10:8080 -s rr
-A -f 9 -s rr
";

fn cleanup_leaves_only_foreign(cleanup_args: &[&str]) {
    fresh_node();
    let mut agent = {
        let manifests = example("nodeport.yaml").display().to_string();
        let hostname = example("hostname.yaml").display().to_string();
        let mut args = vec!["run", "--manifests", &manifests, &hostname];
        args.extend(NODE_ARGS);
        Agent::start(&args)
    };
    agent.wait_for_syncs(1, SYNC_TIMEOUT);
    agent.stop();
    ipvsadm_restore(FOREIGN_RULES);
    // A VIP on kube-ipvs0 but inside an excluded CIDR: not the agent's.
    integration::pods::run(&["ip", "addr", "add", "10.1.200.1/32", "dev", "kube-ipvs0"]);
    ipvsadm_restore("-A -t 10.1.200.1:8443 -s rr\n");
    let before = ipvsadm(&["-Sn"]);
    assert!(
        before.contains(&format!("-A -t {NODE_IP}:30000 ")),
        "a NodePort virtual server: {before}"
    );
    assert!(before.contains("-A -t 10.1.115.75:80 "), "{before}");
    assert!(!kube_ipvs0_addresses().is_empty());

    let printed = agent_command(cleanup_args);
    assert!(printed.contains("and kube-ipvs0"), "{printed}");
    let after = ipvsadm(&["-Sn"]);
    let expected_left = "\
-A -t 10.0.0.1:80 -s rr
-a -t 10.0.0.1:80 -r 10.244.1.2:80 -m -w 1
-A -t 10.1.200.1:8443 -s rr
-A -t 192.168.122.10:8080 -s rr
-A -f 9 -s rr
";
    let mut left: Vec<&str> = after.lines().collect();
    let mut wanted: Vec<&str> = expected_left.lines().collect();
    left.sort();
    wanted.sort();
    assert_eq!(left, wanted, "only the foreign virtual servers are left");
    let link = Command::new("ip")
        .args(["link", "show", "kube-ipvs0"])
        .output()
        .expect("run ip");
    assert!(!link.status.success(), "kube-ipvs0 is gone");
}

/// `ipvs-agent cleanup` leaves every virtual server it does not own.
#[test]
fn cleanup_removes_only_what_the_agent_owns() {
    cleanup_leaves_only_foreign(&["cleanup", "--ipvs-exclude-cidrs", "10.1.200.0/24"]);
}

/// `ipvs-agent run --cleanup` (kube-proxy's flag) does the same and exits.
#[test]
fn run_with_cleanup_flag_cleans_up_and_exits() {
    cleanup_leaves_only_foreign(&["run", "--cleanup", "--ipvs-exclude-cidrs", "10.1.200.0/24"]);
}

/// One HTTP GET from the guest's root namespace: (status code, body).
fn http(url: &str) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}", url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// The value of one sample (`name{labels}` exactly as rendered) in a
/// Prometheus text page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Three Services → the virtual-server gauge says 3; traffic through one
/// moves its kernel counters on /metrics; kube-proxy's sync metrics are
/// there; Events on the Node for the start and for kernel refusals.
/// /healthz and /livez answer 200 with kube-proxy's body, and stay 200
/// through a 60 s API outage (as kube-proxy's), while the table is kept
/// and forwards; the outage shows in `ipvs_agent_api_unreachable_seconds`.
#[test]
fn metrics_and_health_follow_what_happened() {
    use integration::pods::Pod;
    use integration::standin::Standin;
    use serde_json::json;

    fresh_node();
    let mut pod = Pod::create("metrics-1", "10.244.17.1");
    pod.serve("tcp", 9376);
    let client = Pod::create("client", "10.244.9.9");
    let standin = Standin::start(&[]);
    for (name, ip) in [
        ("m-a", "10.96.60.1"),
        ("m-b", "10.96.60.2"),
        ("m-c", "10.96.60.3"),
    ] {
        standin.apply(&json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "selector": {"app": name},
                     "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9376}]}
        }));
        standin.apply(&json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-abcde"), "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "protocol": "TCP", "port": 9376}],
            "endpoints": [{"addresses": ["10.244.17.1"], "conditions": {"ready": true}}]
        }));
    }
    let kubeconfig = standin.kubeconfig.display().to_string();
    let mut args = vec![
        "run",
        "--kubeconfig",
        &kubeconfig,
        "--ipvs-sync-period",
        "4s",
        "--healthz-bind-address",
        "127.0.0.1:10256",
        "--metrics-bind-address",
        "127.0.0.1:10249",
    ];
    args.extend(NODE_ARGS);
    let mut agent = Agent::start(&args);
    agent.wait_for_syncs(1, SYNC_TIMEOUT);

    let metrics = || http("http://127.0.0.1:10249/metrics").1;
    let page = metrics();
    assert_eq!(
        sample(&page, "ipvs_agent_virtual_servers"),
        Some(3.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "ipvs_agent_real_servers"),
        Some(3.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "ipvs_agent_netlink_messages_total{kind=\"add_service\"}"
        ),
        Some(3.0),
        "{page}"
    );
    assert!(
        sample(
            &page,
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv4\"}"
        )
        .is_some_and(|t| t > 1e9),
        "{page}"
    );
    assert!(
        page.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket"),
        "{page}"
    );
    assert_eq!(http("http://127.0.0.1:10256/healthz").0, 200);
    assert_eq!(http("http://127.0.0.1:10256/livez").0, 200);

    // Traffic through m-b only: its counters move at the next full resync.
    let series =
        "ipvs_agent_virtual_server_connections_total{virtual_server=\"TCP 10.96.60.2:80\"}";
    let before = sample(&metrics(), series).unwrap_or(0.0);
    for _ in 0..3 {
        assert_eq!(
            client
                .http_get("10.96.60.2", 80, Duration::from_secs(5))
                .as_deref(),
            Some("metrics-1")
        );
    }
    let moved = integration::node::wait_until(
        "m-b's connection counter to move",
        SYNC_TIMEOUT,
        || sample(&metrics(), series).filter(|now| *now >= before + 3.0),
        metrics,
    );
    let page = metrics();
    assert_eq!(
        sample(
            &page,
            "ipvs_agent_virtual_server_connections_total{virtual_server=\"TCP 10.96.60.1:80\"}"
        ),
        Some(0.0),
        "no traffic went through m-a: {page}"
    );
    assert!(
        sample(&page, "ipvs_agent_real_server_bytes_in_total{virtual_server=\"TCP 10.96.60.2:80\",real_server=\"10.244.17.1:9376\"}")
            .is_some_and(|bytes| bytes > 0.0),
        "{page}"
    );
    println!("m-b connections: {before} → {moved}");

    // An endpoint change with kube-proxy's trigger-time annotation (as
    // the EndpointSlice controller writes it): network programming
    // latency is observed from it.
    let now = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%NZ"])
        .output()
        .expect("run date");
    let trigger = String::from_utf8_lossy(&now.stdout).trim().to_owned();
    standin.apply(&json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "m-a-abcde", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "m-a"},
                     "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": trigger}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "protocol": "TCP", "port": 9376}],
        "endpoints": []
    }));
    integration::node::wait_until(
        "a network programming latency sample",
        SYNC_TIMEOUT,
        || {
            sample(
                &metrics(),
                "kubeproxy_network_programming_duration_seconds_count{ip_family=\"IPv4\"}",
            )
            .filter(|count| *count >= 1.0)
        },
        metrics,
    );
    assert!(sample(
        &metrics(),
        "kubeproxy_sync_proxy_rules_endpoint_changes_total"
    )
    .is_some_and(|n| n >= 1.0));

    // Events on the Node: the start, and the kernel refusing a Service
    // whose annotation asks for a scheduler the kernel does not have.
    let events = || {
        standin
            .request(
                "GET",
                "/apis/events.k8s.io/v1/namespaces/default/events",
                None,
            )
            .body
    };
    let started = integration::node::wait_until(
        "a Starting event on the Node",
        SYNC_TIMEOUT,
        || Some(events()).filter(|list| list.contains("\"Starting\"")),
        events,
    );
    assert!(
        started.contains("\"node1\"") && started.contains("\"Node\""),
        "{started}"
    );
    standin.apply(&json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "m-bad", "namespace": "default",
                     "annotations": {"ipvs-agent.io/scheduler": "nosuch"}},
        "spec": {"clusterIP": "10.96.60.9", "clusterIPs": ["10.96.60.9"],
                 "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}
    }));
    integration::node::wait_until(
        "a KernelRefused event",
        SYNC_TIMEOUT,
        || Some(events()).filter(|list| list.contains("\"KernelRefused\"")),
        events,
    );
    assert!(
        sample(&metrics(), "ipvs_agent_kernel_errors_total{errno=\"2\"}").is_some_and(|n| n >= 1.0),
        "ENOENT (unknown scheduler) counted: {}",
        metrics()
    );
    standin.delete("Service", "default", "m-bad");

    // The API server away for 60 s, far longer than the health timeout
    // (2 × 4 s): kube-proxy's health does not depend on the API server,
    // so /healthz and /livez stay 200 throughout while the kernel keeps
    // forwarding with the table as it is; the outage shows in a metric.
    let healthz = || http("http://127.0.0.1:10256/healthz");
    standin.control("down?seconds=60");
    let outage = std::time::Instant::now();
    let mut longest_outage_seen = 0.0_f64;
    let mut checks = 0.0;
    while outage.elapsed() < Duration::from_secs(58) {
        checks += 1.0;
        let (code, body) = healthz();
        assert_eq!(code, 200, "/healthz during the outage: {body}");
        assert!(
            body.starts_with(r#"{"lastUpdated": ""#)
                && body.ends_with(r#", "nodeEligible": true}"#),
            "kube-proxy's body: {body}"
        );
        assert_eq!(
            http("http://127.0.0.1:10256/livez").0,
            200,
            "/livez during the outage"
        );
        assert_eq!(
            client
                .http_get("10.96.60.2", 80, Duration::from_secs(5))
                .as_deref(),
            Some("metrics-1"),
            "the table is kept and forwards during the outage"
        );
        if let Some(seconds) = sample(&metrics(), "ipvs_agent_api_unreachable_seconds") {
            longest_outage_seen = longest_outage_seen.max(seconds);
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    assert!(
        longest_outage_seen > 20.0,
        "the outage is visible in ipvs_agent_api_unreachable_seconds: {longest_outage_seen}"
    );
    assert!(
        ipvsadm(&["-Ln"]).contains("10.96.60.2:80"),
        "the table was kept: {}",
        ipvsadm(&["-Ln"])
    );
    integration::node::wait_until(
        "ipvs_agent_api_unreachable_seconds back to 0 once the API server is back",
        Duration::from_secs(120),
        || (sample(&metrics(), "ipvs_agent_api_unreachable_seconds") == Some(0.0)).then_some(()),
        metrics,
    );
    let page = metrics();
    assert!(
        sample(&page, "kubeproxy_proxy_healthz_total{code=\"200\"}").is_some_and(|n| n > checks),
        "every /healthz answer counted ({checks} during the outage, one before): {page}"
    );
    assert_eq!(
        sample(&page, "kubeproxy_proxy_healthz_total{code=\"503\"}"),
        None,
        "{page}"
    );
    agent.stop();
}
