//! kube-proxy's metrics and metrics-port endpoints, in the guest: a real
//! scrape of `/metrics` after a sync holds every metric of
//! `kube_proxy_metrics.txt` (kube-proxy's IPVS-mode list) with its type,
//! label names and buckets; the metrics port answers `/healthz` (`ok`),
//! `/proxyMode` (`ipvs`) and `/configz` (the configuration in force);
//! with `--manifests` the change counters and the network-programming
//! histogram move too; a port held at start is taken once it is freed
//! (and is fatal with `--bind-address-hard-fail`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use integration::agent::{agent_binary, Agent};
use integration::node::{fresh_node, wait_until, NODE_ARGS};
use integration::standin::Standin;
use serde_json::json;

const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
const METRICS: &str = "127.0.0.1:10249";
const HEALTHZ: &str = "127.0.0.1:10256";

/// One line of the list: name, type, label names, buckets.
#[derive(Debug)]
struct Listed {
    name: String,
    kind: String,
    labels: BTreeSet<String>,
    buckets: Option<Vec<f64>>,
}

fn listed() -> Vec<Listed> {
    include_str!("kube_proxy_metrics.txt")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('|').map(str::trim).collect();
            assert_eq!(fields.len(), 4, "a list line has four fields: {line}");
            let list = |text: &str| -> Vec<String> {
                if text == "-" {
                    Vec::new()
                } else {
                    text.split(',').map(str::to_owned).collect()
                }
            };
            Listed {
                name: fields[0].to_owned(),
                kind: fields[1].to_owned(),
                labels: list(fields[2]).into_iter().collect(),
                buckets: (fields[3] != "-").then(|| {
                    list(fields[3])
                        .iter()
                        .map(|bound| bound.parse().expect("a bucket bound"))
                        .collect()
                }),
            }
        })
        .collect()
}

/// One HTTP GET from the guest's root namespace: (status code, content
/// type, body).
fn http(url: &str) -> (u16, String, String) {
    let output = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-w",
            "\n%{http_code} %{content_type}",
            url,
        ])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (code, content_type) = tail.split_once(' ').unwrap_or((tail, ""));
    (
        code.trim().parse().unwrap_or(0),
        content_type.trim().to_owned(),
        body.to_owned(),
    )
}

/// The metrics page once it has an IPv4 network programming sample
/// (`what` names the wait in its timeout message).
fn wait_for_programming_sample(what: &str) -> String {
    wait_until(
        what,
        SYNC_TIMEOUT,
        || {
            let page = metrics_page();
            value(
                &page,
                "kubeproxy_network_programming_duration_seconds_count",
                &[("ip_family", "IPv4")],
            )
            .filter(|count| *count >= 1.0)
            .map(|_| page)
        },
        metrics_page,
    )
}

fn metrics_page() -> String {
    http(&format!("http://{METRICS}/metrics")).2
}

/// One sample line: metric name, labels (name to value), value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}')?;
            let mut labels = BTreeMap::new();
            let mut chars = body.chars().peekable();
            loop {
                let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                if key.is_empty() {
                    break;
                }
                if chars.next() != Some('"') {
                    return None;
                }
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        other => value.push(other),
                    }
                }
                labels.insert(key.trim_start_matches(',').to_owned(), value);
                if chars.peek() == Some(&',') {
                    chars.next();
                }
            }
            (name, labels)
        }
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `# TYPE` lines and samples of a page.
fn parse_page(page: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            types.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            samples.push(parse_sample(line).unwrap_or_else(|| panic!("a sample: {line:?}")));
        }
    }
    (types, samples)
}

/// The value of the sample `name` with exactly `labels`.
fn value(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse_page(page)
        .1
        .into_iter()
        .find(|sample| sample.name == name && sample.labels == wanted)
        .map(|sample| sample.value)
}

/// Checks every listed metric against `page`; returns the problems.
fn check_against_list(page: &str) -> Vec<String> {
    let (types, samples) = parse_page(page);
    let mut problems = Vec::new();
    for metric in listed() {
        match types.get(&metric.name) {
            Some(kind) if *kind == metric.kind => {}
            other => problems.push(format!(
                "{}: # TYPE {other:?}, not {}",
                metric.name, metric.kind
            )),
        }
        let series: Vec<&Sample> = samples
            .iter()
            .filter(|sample| match metric.kind.as_str() {
                "histogram" => [
                    format!("{}_bucket", metric.name),
                    format!("{}_sum", metric.name),
                    format!("{}_count", metric.name),
                ]
                .contains(&sample.name),
                _ => sample.name == metric.name,
            })
            .collect();
        if series.is_empty() {
            problems.push(format!("{}: no sample", metric.name));
            continue;
        }
        for sample in &series {
            let labels: BTreeSet<String> = sample
                .labels
                .keys()
                .filter(|key| *key != "le")
                .cloned()
                .collect();
            if labels != metric.labels {
                problems.push(format!(
                    "{}: labels {labels:?}, not {:?} ({:?})",
                    sample.name, metric.labels, sample.labels
                ));
            }
        }
        if let Some(buckets) = &metric.buckets {
            // The bounds of each series (one per ip_family value).
            let mut by_series: BTreeMap<Vec<(String, String)>, Vec<f64>> = BTreeMap::new();
            for sample in series
                .iter()
                .filter(|s| s.name == format!("{}_bucket", metric.name))
            {
                let key: Vec<(String, String)> = sample
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "le")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let le = &sample.labels["le"];
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("le is a number")
                };
                by_series.entry(key).or_default().push(bound);
            }
            let mut expected = buckets.clone();
            expected.push(f64::INFINITY);
            if by_series.is_empty() {
                problems.push(format!("{}: no bucket", metric.name));
            }
            for (key, bounds) in by_series {
                let same = bounds.len() == expected.len()
                    && bounds
                        .iter()
                        .zip(&expected)
                        .all(|(a, b)| a == b || (a - b).abs() < 1e-9);
                if !same {
                    problems.push(format!(
                        "{} {key:?}: buckets {bounds:?}, not {expected:?}",
                        metric.name
                    ));
                }
            }
        }
    }
    problems
}

/// Now, as the EndpointSlice controller writes the trigger time.
fn rfc3339_now() -> String {
    let output = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%NZ"])
        .output()
        .expect("run date");
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

fn service(name: &str, ip: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "selector": {"app": name},
                 "ports": [{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 5353},
                           {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9376}]}
    })
}

fn slice(name: &str, address: &str, trigger: Option<&str>) -> serde_json::Value {
    let mut metadata = json!({"name": format!("{name}-abcde"), "namespace": "default",
                              "labels": {"kubernetes.io/service-name": name}});
    if let Some(trigger) = trigger {
        metadata["annotations"] =
            json!({"endpoints.kubernetes.io/last-change-trigger-time": trigger});
    }
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": metadata,
        "addressType": "IPv4",
        "ports": [{"name": "dns", "protocol": "UDP", "port": 5353},
                  {"name": "http", "protocol": "TCP", "port": 9376}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": true}}]
    })
}

fn agent_against(standin: &Standin, extra: &[&str]) -> Agent {
    let kubeconfig = standin.kubeconfig.display().to_string();
    let mut args = vec![
        "run",
        "--kubeconfig",
        &kubeconfig,
        "--healthz-bind-address",
        HEALTHZ,
        "--metrics-bind-address",
        METRICS,
    ];
    args.extend(extra);
    args.extend(NODE_ARGS);
    Agent::start(&args)
}

/// After a sync and an EndpointSlice change carrying kube-proxy's
/// trigger-time annotation, every listed metric is on `/metrics` with
/// kube-proxy's type, labels and buckets; the network-programming
/// histogram has its sample under `ip_family="IPv4"`; the metrics port
/// answers `/healthz`, `/proxyMode` and `/configz` as kube-proxy's does.
#[test]
fn every_kube_proxy_metric_is_exported_as_kube_proxy_exports_it() {
    fresh_node();
    let standin = Standin::start(&[]);
    standin.apply(&service("km-a", "10.96.70.1"));
    standin.apply(&slice("km-a", "10.244.70.1", None));
    let mut agent = agent_against(&standin, &[]);
    agent.wait_for_syncs(1, SYNC_TIMEOUT);
    // The health server's counters exist once it has answered.
    assert_eq!(http(&format!("http://{HEALTHZ}/healthz")).0, 200);
    assert_eq!(http(&format!("http://{HEALTHZ}/livez")).0, 200);
    // A change with a trigger time (after the agent started).
    std::thread::sleep(Duration::from_millis(1100));
    let trigger = rfc3339_now();
    standin.apply(&slice("km-a", "10.244.70.2", Some(&trigger)));
    let page = wait_for_programming_sample("a network programming sample");
    let problems = check_against_list(&page);
    assert!(
        problems.is_empty(),
        "against kube_proxy_metrics.txt:\n{}\n\npage:\n{page}",
        problems.join("\n")
    );
    let latency = value(
        &page,
        "kubeproxy_network_programming_duration_seconds_sum",
        &[("ip_family", "IPv4")],
    )
    .unwrap();
    assert!(
        (0.0..30.0).contains(&latency),
        "from the trigger time {trigger}: {latency} s"
    );
    assert!(
        value(
            &page,
            "kubeproxy_sync_proxy_rules_endpoint_changes_total",
            &[]
        )
        .is_some_and(|n| n >= 1.0),
        "{page}"
    );
    assert!(
        value(
            &page,
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            &[("ip_family", "IPv4")]
        )
        .is_some_and(|t| t > 1e9),
        "{page}"
    );
    assert!(
        value(&page, "process_resident_memory_bytes", &[]).is_some_and(|b| b > 1e6),
        "{page}"
    );
    println!(
        "{} listed metrics checked; network programming {latency:.3} s",
        listed().len()
    );

    let (code, content_type, body) = http(&format!("http://{METRICS}/healthz"));
    assert_eq!(
        (code, content_type.as_str(), body.as_str()),
        (200, "text/plain; charset=utf-8", "ok")
    );
    let (code, content_type, body) = http(&format!("http://{METRICS}/proxyMode"));
    assert_eq!(
        (code, content_type.as_str(), body.as_str()),
        (200, "text/plain; charset=utf-8", "ipvs")
    );
    let (code, content_type, body) = http(&format!("http://{METRICS}/configz"));
    assert_eq!((code, content_type.as_str()), (200, "application/json"));
    let configz: serde_json::Value = serde_json::from_str(&body).expect("/configz is JSON");
    let config = &configz["kubeproxy.config.k8s.io"];
    assert_eq!(config["metricsBindAddress"], METRICS, "{body}");
    assert_eq!(config["healthzBindAddress"], HEALTHZ, "{body}");
    assert_eq!(config["kind"], "KubeProxyConfiguration", "{body}");
    agent.stop();
}

/// With `--manifests`: a changed file is a change: the change counters
/// move and the network-programming histogram gets a sample (from the
/// file's modification time, the slice having no annotation).
#[test]
fn manifests_changes_are_counted_and_timed() {
    fresh_node();
    let dir = std::env::temp_dir().join(format!("km-manifests-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, objects: &[serde_json::Value]| {
        let text: Vec<String> = objects.iter().map(|o| o.to_string()).collect();
        std::fs::write(dir.join(name), text.join("\n---\n")).unwrap();
    };
    write(
        "a.yaml",
        &[
            service("km-f", "10.96.71.1"),
            slice("km-f", "10.244.71.1", None),
        ],
    );
    let manifests = dir.display().to_string();
    let mut args = vec![
        "run",
        "--manifests",
        &manifests,
        "--manifests-poll-interval",
        "200ms",
        "--healthz-bind-address",
        HEALTHZ,
        "--metrics-bind-address",
        METRICS,
    ];
    args.extend(NODE_ARGS);
    let mut agent = Agent::start(&args);
    agent.wait_for_syncs(1, SYNC_TIMEOUT);
    std::thread::sleep(Duration::from_millis(1100));
    write(
        "a.yaml",
        &[
            service("km-f", "10.96.71.1"),
            slice("km-f", "10.244.71.2", None),
        ],
    );
    let page = wait_for_programming_sample("a network programming sample in file mode");
    assert_eq!(
        value(
            &page,
            "kubeproxy_sync_proxy_rules_endpoint_changes_total",
            &[]
        ),
        Some(1.0),
        "one EndpointSlice changed: {page}"
    );
    assert_eq!(
        value(
            &page,
            "kubeproxy_sync_proxy_rules_service_changes_total",
            &[]
        ),
        Some(0.0),
        "no Service changed: {page}"
    );
    agent.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The metrics port held by another listener at start (the old
/// kube-proxy during a swap): the agent syncs anyway, says it will try
/// again, and serves the port within a retry once it is freed. With
/// `--bind-address-hard-fail` the same start is fatal.
#[test]
fn a_held_port_is_taken_once_freed_unless_hard_fail() {
    fresh_node();
    let standin = Standin::start(&[]);
    standin.apply(&service("km-b", "10.96.72.1"));
    standin.apply(&slice("km-b", "10.244.72.1", None));

    let holder = std::net::TcpListener::bind(METRICS).expect("hold the metrics port");
    let kubeconfig = standin.kubeconfig.display().to_string();
    let mut args = vec![
        "run",
        "--kubeconfig",
        &kubeconfig,
        "--healthz-bind-address",
        HEALTHZ,
        "--metrics-bind-address",
        METRICS,
        "--bind-address-hard-fail",
    ];
    args.extend(NODE_ARGS);
    let output = Command::new(agent_binary())
        .args(&args)
        .output()
        .expect("run ipvs-agent");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("10249"),
        "fatal with --bind-address-hard-fail: {} {stderr}",
        output.status
    );

    let mut agent = agent_against(&standin, &[]);
    agent.wait_for_syncs(1, SYNC_TIMEOUT);
    assert!(
        agent.log_text().contains("cannot listen"),
        "{}",
        agent.log_text()
    );
    drop(holder);
    let freed = std::time::Instant::now();
    let body = wait_until(
        "the agent to take the freed metrics port",
        Duration::from_secs(15),
        || {
            let (code, _, body) = http(&format!("http://{METRICS}/proxyMode"));
            (code == 200).then_some(body)
        },
        || agent.log_text(),
    );
    assert_eq!(body, "ipvs");
    println!(
        "metrics port taken {:?} after it was freed",
        freed.elapsed()
    );
    assert!(metrics_page().contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket"));
    agent.stop();
}

#[test]
fn samples_are_parsed() {
    let sample = parse_sample(r#"a_bucket{ip_family="IPv4",le="+Inf"} 3"#).unwrap();
    assert_eq!(sample.name, "a_bucket");
    assert_eq!(sample.labels["le"], "+Inf");
    assert_eq!(sample.labels["ip_family"], "IPv4");
    assert_eq!(sample.value, 3.0);
    let plain = parse_sample("process_open_fds 12").unwrap();
    assert!(plain.labels.is_empty());
    assert_eq!(listed().len(), 20);
}
