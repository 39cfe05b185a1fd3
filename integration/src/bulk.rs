//! Large synthetic clusters for tests and benchmarks, as manifests: the
//! objects a real cluster would hold for `count` ClusterIP Services with
//! `endpoints` ready endpoints each.

use std::fmt::Write as _;

/// Services per address block: 250 fourth octets × 256 third octets.
const BLOCK: usize = 64_000;

/// The ClusterIP of Service `index`: 10.100.x.y for the first 64,000,
/// 10.101.x.y for the next (up to 128,000 Services).
pub fn service_ip(index: usize) -> String {
    let (block, within) = block_of(index);
    format!("10.{}.{}.{}", 100 + block, within / 250, within % 250 + 1)
}

/// Endpoint `endpoint` of Service `index` (up to 56): 10.(200+e).x.y for
/// the first 64,000 Services, 10.(140+e).x.y for the next.
pub fn endpoint_ip(index: usize, endpoint: usize) -> String {
    assert!(endpoint < 56, "at most 56 endpoints per Service");
    let (block, within) = block_of(index);
    let second = [200, 140][block] + endpoint;
    format!("10.{second}.{}.{}", within / 250, within % 250 + 1)
}

fn block_of(index: usize) -> (usize, usize) {
    assert!(index < 2 * BLOCK, "at most 128,000 Services");
    (index / BLOCK, index % BLOCK)
}

/// Services `svc-0..count` in namespace `bulk` (TCP port 80 → 8080) with
/// one EndpointSlice each holding `endpoints` ready endpoints on `node1`,
/// as one multi-document YAML text.
pub fn many_services(count: usize, endpoints: usize) -> String {
    let mut text = String::with_capacity(count * (400 + endpoints * 80));
    for index in 0..count {
        let ip = service_ip(index);
        let _ = write!(
            text,
            "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{index}, namespace: bulk}}\n\
             spec: {{clusterIP: {ip}, clusterIPs: [{ip}], selector: {{app: svc-{index}}},\n  \
             ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080}}]}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: svc-{index}-abcde, namespace: bulk, labels: {{kubernetes.io/service-name: svc-{index}}}}}\n\
             addressType: IPv4\nports: [{{name: http, protocol: TCP, port: 8080}}]\nendpoints:\n"
        );
        for endpoint in 0..endpoints {
            let _ = writeln!(
                text,
                "- {{addresses: [{}], conditions: {{ready: true}}, nodeName: node1}}",
                endpoint_ip(index, endpoint)
            );
        }
        text.push_str("---\n");
    }
    text
}

/// The EndpointSlice of Service `index` (as [`many_services`] writes it)
/// with its first `count` endpoints, as the JSON an API write sends.
pub fn service_slice(index: usize, count: usize) -> serde_json::Value {
    let endpoints: Vec<serde_json::Value> = (0..count)
        .map(|endpoint| {
            serde_json::json!({"addresses": [endpoint_ip(index, endpoint)],
                               "conditions": {"ready": true}, "nodeName": "node1"})
        })
        .collect();
    serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("svc-{index}-abcde"), "namespace": "bulk",
                     "labels": {"kubernetes.io/service-name": format!("svc-{index}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        "endpoints": endpoints
    })
}
