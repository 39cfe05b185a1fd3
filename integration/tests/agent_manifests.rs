//! `ipvs-agent run --manifests` end to end in the guest: real traffic from
//! client pods through the VIPs the agent programs, the messages it sends
//! on changes, what it leaves alone, restart and drain.
//!
//! Pods are network namespaces (see `integration::pods`); the node's own
//! address is `192.168.122.10` on a dummy `node0`. Each test starts from an
//! empty IPVS table and no `kube-ipvs0`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use integration::agent::Agent;
use integration::capture::NetlinkCapture;
use integration::node::{
    fresh_node, kube_ipvs0_addresses, plan_save, saved_lines, NODE_ARGS, NODE_IP,
};
use integration::pods::{hostname_pods, run, Pod};
use integration::{example, ipvs_family_id, ipvsadm};

const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A fresh writable folder for manifests.
fn manifest_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("manifests-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the manifest folder");
    dir
}

/// Writes `text` to `dir/name`, replacing it in one rename so the agent
/// never reads half a file.
fn write_manifest(dir: &Path, name: &str, text: &str) {
    let staging = dir.join(format!(".{name}.tmp"));
    std::fs::write(&staging, text).expect("write manifest");
    std::fs::rename(&staging, dir.join(name)).expect("rename manifest");
}

fn start_agent(manifests: &[&Path], extra: &[&str]) -> Agent {
    let mut args: Vec<String> = vec!["run".into(), "--manifests".into()];
    args.extend(manifests.iter().map(|p| p.display().to_string()));
    args.extend(NODE_ARGS.map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Agent::start(&refs)
}

/// The hostname example: three pods behind the ClusterIP answer in
/// round-robin, as the document shows with curl; `plan --output save`
/// equals `ipvsadm -Sn` after `run`.
#[test]
fn hostname_service_round_robins_over_three_pods() {
    fresh_node();
    let mut pods: Vec<Pod> = hostname_pods();
    let client = Pod::create("client", "10.244.9.9");
    let manifests = example("hostname.yaml");
    for sysctl in ["net/ipv4/vs/conntrack", "net/ipv4/vs/expire_nodest_conn"] {
        std::fs::write(format!("/proc/sys/{sysctl}"), "0\n").expect("reset a sysctl");
    }
    let mut agent = start_agent(
        &[&manifests],
        &[
            "--ipvs-tcp-timeout",
            "900s",
            "--ipvs-tcpfin-timeout",
            "60s",
            "--ipvs-udp-timeout",
            "5m",
        ],
    );
    let first = agent.wait_for_syncs(1, SYNC_TIMEOUT)[0].clone();
    // kube-proxy's sysctls, the timeouts (SET_CONFIG) and a dummy, up
    // kube-ipvs0, read back with the real tools.
    for (sysctl, value) in [
        ("net/ipv4/vs/conntrack", "1"),
        ("net/ipv4/vs/expire_nodest_conn", "1"),
        ("net/ipv4/vs/expire_quiescent_template", "1"),
        ("net/ipv4/ip_forward", "1"),
    ] {
        let read = std::fs::read_to_string(format!("/proc/sys/{sysctl}")).expect("read sysctl");
        assert_eq!(read.trim(), value, "{sysctl}");
    }
    assert_eq!(
        ipvsadm(&["-Ln", "--timeout"]).trim(),
        "Timeout (tcp tcpfin udp): 900 60 300"
    );
    let link = run(&["ip", "-d", "link", "show", "kube-ipvs0"]);
    assert!(
        link.contains("dummy") && !link.contains(",UP"),
        "kube-ipvs0 stays down, as with kube-proxy: {link}"
    );
    assert_eq!(first.kind(), "full");
    assert_eq!(
        (first.count("add_service"), first.count("add_real_server")),
        (1, 3),
        "first sync: one virtual server with three real servers"
    );
    assert!(kube_ipvs0_addresses().contains("10.1.115.75/32"));

    let answers: Vec<String> = (0..6)
        .map(|_| {
            client
                .http_get("10.1.115.75", 80, REQUEST_TIMEOUT)
                .expect("the ClusterIP answers")
        })
        .collect();
    let distinct: BTreeSet<&String> = answers.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "round-robin over three pods: {answers:?}"
    );
    assert_eq!(
        answers[0..3],
        answers[3..6],
        "rr repeats its order: {answers:?}"
    );

    let planned = plan_save(&[&manifests], &[]);
    assert_eq!(
        planned,
        ipvsadm(&["-Sn"]),
        "plan --output save vs ipvsadm -Sn"
    );
    agent.stop();
    pods.clear();
}

/// The selector-less Service reaches its manual Endpoints.
#[test]
fn selectorless_service_reaches_manual_endpoints() {
    fresh_node();
    let mut pods: Vec<Pod> = ["10.28.88.9", "10.28.88.10", "10.28.88.11", "10.28.88.12"]
        .iter()
        .enumerate()
        .map(|(i, address)| {
            let mut pod = Pod::create(&format!("external-{i}"), address);
            pod.serve("tcp", 9000);
            pod
        })
        .collect();
    let client = Pod::create("client", "10.244.9.9");
    let manifests = example("nginx-1-external.yaml");
    let mut agent = start_agent(&[&manifests], &[]);
    agent.wait_for_syncs(1, SYNC_TIMEOUT);
    let answers: BTreeSet<String> = (0..4)
        .map(|_| {
            client
                .http_get("172.20.226.170", 80, REQUEST_TIMEOUT)
                .expect("the selector-less Service answers")
        })
        .collect();
    assert_eq!(
        answers.len(),
        4,
        "all four manual endpoints answer: {answers:?}"
    );
    assert_eq!(plan_save(&[&manifests], &[]), ipvsadm(&["-Sn"]));
    agent.stop();
    pods.clear();
}

/// NodePort answers on the node's address; externalIPs answer; headless
/// and ExternalName Services make no virtual server.
#[test]
fn nodeport_externalips_headless_and_externalname() {
    fresh_node();
    let mut nginx = Pod::create("nginx", "10.244.1.20");
    nginx.serve("tcp", 80);
    let mut my_app = Pod::create("my-app", "10.244.3.10");
    my_app.serve("tcp", 9376);
    let client = Pod::create("client", "10.244.9.9");
    let manifests = [
        example("nodeport.yaml"),
        example("externalips.yaml"),
        example("headless.yaml"),
        example("externalname.yaml"),
    ];
    let paths: Vec<&Path> = manifests.iter().map(PathBuf::as_path).collect();
    let mut agent = start_agent(&paths, &[]);
    agent.wait_for_syncs(1, SYNC_TIMEOUT);

    assert_eq!(
        client.http_get(NODE_IP, 30000, REQUEST_TIMEOUT).as_deref(),
        Some("nginx"),
        "NodePort 30000 on the node's address"
    );
    assert_eq!(
        client
            .http_get("10.1.46.104", 8080, REQUEST_TIMEOUT)
            .as_deref(),
        Some("nginx"),
        "the NodePort Service's ClusterIP"
    );
    assert_eq!(
        client
            .http_get("198.51.100.32", 80, REQUEST_TIMEOUT)
            .as_deref(),
        Some("my-app"),
        "the externalIP"
    );
    let saved = ipvsadm(&["-Sn"]);
    for absent in ["192.168.40.103", "192.168.40.96"] {
        assert!(
            !saved.contains(absent),
            "headless endpoints must not appear: {saved}"
        );
    }
    assert_eq!(
        plan_save(&paths, &[]),
        saved,
        "plan --output save vs ipvsadm -Sn"
    );
    agent.stop();
}

const WEB_SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.1.0.50
  selector: {app: web}
  ports:
  - {name: http, protocol: TCP, port: 80, targetPort: 8080}
"#;

fn web_slice(addresses: &[&str], port: u16) -> String {
    let endpoints: String = addresses
        .iter()
        .map(|address| {
            format!(
                "- addresses: [\"{address}\"]\n  conditions: {{ready: true}}\n  nodeName: node1\n"
            )
        })
        .collect();
    format!(
        r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports:
- {{name: http, protocol: TCP, port: {port}}}
endpoints:
{endpoints}"#
    )
}

/// Changing manifests converges with the expected messages only; a
/// foreign virtual server survives; restarting sends nothing.
#[test]
fn changes_converge_with_only_the_needed_messages() {
    fresh_node();
    // Another tool's virtual servers: not on kube-ipvs0, not a node
    // address; and one inside --ipvs-exclude-cidrs.
    ipvsadm(&["-A", "-t", "10.20.30.40:80", "-s", "wlc"]);
    ipvsadm(&["-a", "-t", "10.20.30.40:80", "-r", "10.244.7.7:80", "-m"]);
    ipvsadm(&["-A", "-t", "10.1.99.1:80", "-s", "rr"]);
    let dir = manifest_dir("changes");
    write_manifest(&dir, "web-service.yaml", WEB_SERVICE);
    write_manifest(
        &dir,
        "web-slice.yaml",
        &web_slice(&["10.244.5.1", "10.244.5.2", "10.244.5.3"], 8080),
    );
    let mut agent = start_agent(&[&dir], &["--ipvs-exclude-cidrs", "10.1.99.0/24"]);
    let first = agent.wait_for_syncs(1, SYNC_TIMEOUT)[0].clone();
    assert_eq!(
        (
            first.count("add_service"),
            first.count("add_real_server"),
            first.writes()
        ),
        (1, 3, 4)
    );

    // Scale 3 -> 2: one real server deleted (no connections: at once).
    write_manifest(
        &dir,
        "web-slice.yaml",
        &web_slice(&["10.244.5.1", "10.244.5.2"], 8080),
    );
    let sync = agent.wait_for_syncs(2, SYNC_TIMEOUT)[1].clone();
    assert_eq!(sync.kind(), "incremental");
    assert_eq!(
        (sync.count("delete_real_server"), sync.writes()),
        (1, 1),
        "{sync:?}"
    );
    assert_eq!(saved_lines("-t 10.1.0.50:80").len(), 3);

    // Change the target port: two real servers replaced. This endpoint
    // change changes no nftables set element (the same pods, the same
    // Service ports): the kernel receives no netfilter message at all.
    let mut capture = NetlinkCapture::start("endpoint-change");
    write_manifest(
        &dir,
        "web-slice.yaml",
        &web_slice(&["10.244.5.1", "10.244.5.2"], 9090),
    );
    let sync = agent.wait_for_syncs(3, SYNC_TIMEOUT)[2].clone();
    assert_eq!(capture.stop(ipvs_family_id()).len(), 4);
    assert_eq!(
        capture.netfilter_writes(),
        Vec::<u16>::new(),
        "nf_tables write messages for an endpoint change that changes no set"
    );
    assert_eq!(sync.count("nft_transactions"), 0, "{sync:?}");
    assert_eq!(
        (
            sync.count("add_real_server"),
            sync.count("delete_real_server"),
            sync.writes()
        ),
        (2, 2, 4),
        "{sync:?}"
    );
    assert!(ipvsadm(&["-Sn"]).contains("-r 10.244.5.1:9090 -m -w 1"));

    // A scheduler change through the annotation: edited in place.
    let annotated = WEB_SERVICE.replace(
        "metadata: {name: web, namespace: default}",
        "metadata: {name: web, namespace: default, annotations: {ipvs-agent.io/scheduler: wrr}}",
    );
    write_manifest(&dir, "web-service.yaml", &annotated);
    let sync = agent.wait_for_syncs(4, SYNC_TIMEOUT)[3].clone();
    assert_eq!(
        (sync.count("edit_service"), sync.writes()),
        (1, 1),
        "{sync:?}"
    );
    assert!(ipvsadm(&["-Sn"]).contains("-A -t 10.1.0.50:80 -s wrr"));

    // Restart with a wanted real server quiesced behind the agent's back
    // (kube-proxy bug #92019): adopted without a flush, only its weight
    // reset.
    agent.stop();
    ipvsadm(&[
        "-e",
        "-t",
        "10.1.0.50:80",
        "-r",
        "10.244.5.1:9090",
        "-m",
        "-w",
        "0",
    ]);
    let mut capture = NetlinkCapture::start("adopt");
    let mut agent = start_agent(&[&dir], &["--ipvs-exclude-cidrs", "10.1.99.0/24"]);
    let restart = agent.wait_for_syncs(1, SYNC_TIMEOUT)[0].clone();
    let writes = capture.stop(ipvs_family_id());
    const IPVS_CMD_SET_DEST: u8 = 6;
    assert_eq!(
        writes
            .iter()
            .map(|(command, _)| *command)
            .collect::<Vec<_>>(),
        vec![IPVS_CMD_SET_DEST],
        "the kernel saw exactly one SET_DEST"
    );
    assert_eq!(
        (
            restart.kind(),
            restart.count("edit_real_server"),
            restart.writes()
        ),
        ("full", 1, 1),
        "{restart:?}"
    );
    assert!(ipvsadm(&["-Sn"]).contains("-r 10.244.5.1:9090 -m -w 1"));

    // Restart on an unchanged table: the first sync sends nothing, as the
    // agent says and as an nlmon capture of the kernel's side shows.
    agent.stop();
    let mut capture = NetlinkCapture::start("restart");
    let mut agent = start_agent(&[&dir], &["--ipvs-exclude-cidrs", "10.1.99.0/24"]);
    let restart = agent.wait_for_syncs(1, SYNC_TIMEOUT)[0].clone();
    let writes = capture.stop(ipvs_family_id());
    assert!(
        writes.is_empty(),
        "the kernel received {} IPVS write requests on restart (commands {:?})",
        writes.len(),
        writes
            .iter()
            .map(|(command, _)| command)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        (restart.kind(), restart.writes()),
        ("full", 0),
        "{restart:?}"
    );

    // A race: someone creates the virtual server the agent is about to
    // add. The kernel answers EEXIST; the agent re-reads it and edits it
    // into shape instead of failing.
    ipvsadm(&["-A", "-t", "10.1.0.60:80", "-s", "wlc"]);
    ipvsadm(&[
        "-a",
        "-t",
        "10.1.0.60:80",
        "-r",
        "10.244.6.1:8080",
        "-m",
        "-w",
        "3",
    ]);
    write_manifest(
        &dir,
        "race.yaml",
        r#"
apiVersion: v1
kind: Service
metadata: {name: race, namespace: default}
spec:
  clusterIP: 10.1.0.60
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: race-1, namespace: default, labels: {kubernetes.io/service-name: race}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints: [{addresses: ["10.244.6.1"]}]
"#,
    );
    let race = agent.wait_for_syncs(2, SYNC_TIMEOUT)[1].clone();
    assert_eq!(
        (race.count("reread"), race.count("failed")),
        (1, 0),
        "EEXIST is a reason to re-read, not a failure: {race:?}"
    );
    assert_eq!(
        saved_lines("-t 10.1.0.60:80"),
        vec![
            "-A -t 10.1.0.60:80 -s rr",
            "-a -t 10.1.0.60:80 -r 10.244.6.1:8080 -m -w 1"
        ]
    );
    std::fs::remove_file(dir.join("race.yaml")).expect("remove manifest");
    agent.wait_for_syncs(3, SYNC_TIMEOUT);

    // Delete the Service: its virtual server and VIP go, nothing else.
    std::fs::remove_file(dir.join("web-service.yaml")).expect("remove manifest");
    let sync = agent.wait_for_syncs(4, SYNC_TIMEOUT)[3].clone();
    assert_eq!(
        (sync.count("delete_service"), sync.writes()),
        (1, 1),
        "{sync:?}"
    );
    assert!(!kube_ipvs0_addresses().contains("10.1.0.50/32"));
    let saved = ipvsadm(&["-Sn"]);
    assert!(!saved.contains("10.1.0.50"), "{saved}");
    assert!(
        saved.contains("-A -t 10.20.30.40:80 -s wlc")
            && saved.contains("-a -t 10.20.30.40:80 -r 10.244.7.7:80 -m -w 1")
            && saved.contains("-A -t 10.1.99.1:80 -s rr"),
        "foreign virtual servers survive: {saved}"
    );
    agent.stop();
}

/// A full resync repairs drift: `ipvsadm -C`, a deleted real server, a
/// removed VIP.
#[test]
fn resync_repairs_drift() {
    fresh_node();
    let dir = manifest_dir("drift");
    write_manifest(&dir, "web-service.yaml", WEB_SERVICE);
    write_manifest(
        &dir,
        "web-slice.yaml",
        &web_slice(&["10.244.5.1", "10.244.5.2"], 8080),
    );
    let mut agent = start_agent(&[&dir], &["--ipvs-sync-period", "2s"]);
    agent.wait_for_syncs(1, SYNC_TIMEOUT);
    let wanted = ipvsadm(&["-Sn"]);
    ipvsadm(&["-d", "-t", "10.1.0.50:80", "-r", "10.244.5.2:8080"]);
    run(&["ip", "addr", "del", "10.1.0.50/32", "dev", "kube-ipvs0"]);
    let before = agent.syncs().len();
    let syncs = agent.wait_for_syncs(before + 2, SYNC_TIMEOUT);
    let repair = syncs[before..]
        .iter()
        .find(|sync| sync.writes() > 0)
        .expect("a resync repaired the drift")
        .clone();
    assert_eq!(repair.count("add_real_server"), 1, "{repair:?}");
    assert_eq!(ipvsadm(&["-Sn"]), wanted);
    assert!(kube_ipvs0_addresses().contains("10.1.0.50/32"));

    ipvsadm(&["-C"]);
    let before = agent.syncs().len();
    agent.wait_for_syncs(before + 2, SYNC_TIMEOUT);
    assert_eq!(ipvsadm(&["-Sn"]), wanted, "after ipvsadm -C");
    agent.stop();
}

/// A live TCP connection to a removed endpoint keeps working while its real
/// server drains at weight 0; new connections go elsewhere; it is deleted
/// once drained (here bounded by a short --ipvs-drain-timeout).
#[test]
fn removed_endpoint_drains_live_connection() {
    fresh_node();
    let mut first = Pod::create("web-1", "10.244.5.1");
    first.serve("tcp", 8080);
    let mut second = Pod::create("web-2", "10.244.5.2");
    second.serve("tcp", 8080);
    let client = Pod::create("client", "10.244.9.9");
    let dir = manifest_dir("drain");
    write_manifest(&dir, "web-service.yaml", WEB_SERVICE);
    write_manifest(&dir, "web-slice.yaml", &web_slice(&["10.244.5.1"], 8080));
    let mut agent = start_agent(&[&dir], &["--ipvs-drain-timeout", "20s"]);
    agent.wait_for_syncs(1, SYNC_TIMEOUT);

    let mut held = client.hold_connection("10.1.0.50", 80);
    let mut answers = BufReader::new(held.stdout.take().expect("piped"));
    let mut line = String::new();
    answers.read_line(&mut line).expect("first answer");
    assert_eq!(line.trim(), "web-1");

    // web-1 leaves, web-2 arrives.
    write_manifest(&dir, "web-slice.yaml", &web_slice(&["10.244.5.2"], 8080));
    let sync = agent.wait_for_syncs(2, SYNC_TIMEOUT)[1].clone();
    assert_eq!(
        (
            sync.count("edit_real_server"),
            sync.count("add_real_server"),
            sync.count("delete_real_server")
        ),
        (1, 1, 0),
        "web-1 quiesced to weight 0, not deleted: {sync:?}"
    );
    assert!(ipvsadm(&["-Sn"]).contains("-r 10.244.5.1:8080 -m -w 0"));

    let mut stdin = held.stdin.take().expect("piped");
    writeln!(stdin, "again").expect("write to the held connection");
    line.clear();
    answers
        .read_line(&mut line)
        .expect("answer on the held connection");
    assert_eq!(
        line.trim(),
        "web-1",
        "the live connection still reaches web-1"
    );
    assert_eq!(
        client.http_get("10.1.0.50", 80, REQUEST_TIMEOUT).as_deref(),
        Some("web-2"),
        "new connections go to web-2"
    );

    drop(stdin);
    let _ = held.wait();
    // Deleted once drained or after the 20 s bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while ipvsadm(&["-Sn"]).contains("10.244.5.1:8080") {
        assert!(
            std::time::Instant::now() < deadline,
            "web-1 was never deleted; log:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let deleted = agent
        .syncs()
        .iter()
        .filter(|sync| sync.kind() == "drain")
        .map(|sync| sync.count("delete_real_server"))
        .sum::<u64>();
    assert_eq!(deleted, 1, "the drain check deleted web-1");
    agent.stop();
}
