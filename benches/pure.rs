//! Criterion benchmarks of the agent's pure parts at issue 6's scale:
//! the desired state of 20,000 Services × 10 endpoints, and the diff of two
//! 220,000-object tables (no change, and 1% of the Services changed).
//! Run with `cargo bench -p ipvs-agent --bench pure`.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ipvs_agent::desired::desired_state;
use ipvs_agent::diff::{plan_changes, DrainPolicy, Draining, Ownership};
use ipvs_agent::model::{ClusterState, NodeContext, ProxySettings, Table};
use ipvs_agent::sources::manifests::{load_text, LoadedManifests};

const SERVICES: usize = 20_000;
const ENDPOINTS: usize = 10;

fn cluster() -> ClusterState {
    let mut loaded = LoadedManifests::default();
    let text = integration::bulk::many_services(SERVICES, ENDPOINTS);
    load_text(Path::new("bench.yaml"), &text, &mut loaded);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded.cluster
}

fn node() -> NodeContext {
    NodeContext {
        name: "node1".into(),
        ..NodeContext::default()
    }
}

fn benchmarks(c: &mut Criterion) {
    let cluster = cluster();
    let node = node();
    let settings = ProxySettings::default();
    let mut group = c.benchmark_group("pure");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("desired_state: 20,000 Services x 10 endpoints", |b| {
        b.iter(|| desired_state(&cluster, &node, &settings))
    });

    let desired: Table = desired_state(&cluster, &node, &settings).table();
    let objects: usize = desired.values().map(|e| 1 + e.real_servers.len()).sum();
    assert_eq!(objects, SERVICES * (ENDPOINTS + 1));
    let ownership = Ownership {
        bound_addresses: desired
            .keys()
            .filter_map(|key| match key {
                netlink_ipvs::IpvsServiceKey::Inet { address, .. } => Some(*address),
                _ => None,
            })
            .collect(),
        ..Ownership::default()
    };
    let draining = Draining::new();
    let policy = DrainPolicy::default();
    group.bench_function("plan_changes: 220,000 objects, nothing changed", |b| {
        b.iter(|| {
            let plan = plan_changes(
                &desired,
                &desired,
                &ownership,
                &draining,
                &policy,
                Instant::now(),
            );
            assert!(plan.operations.is_empty());
            plan
        })
    });
    // The kernel misses one real server of every 100th Service.
    let mut kernel = desired.clone();
    for entry in kernel.values_mut().step_by(100) {
        let first = *entry.real_servers.keys().next().expect("a real server");
        entry.real_servers.remove(&first);
    }
    group.bench_function(
        "plan_changes: 220,000 objects, 1% of Services changed",
        |b| {
            b.iter(|| {
                let plan = plan_changes(
                    &desired,
                    &kernel,
                    &ownership,
                    &draining,
                    &policy,
                    Instant::now(),
                );
                assert_eq!(plan.operations.len(), SERVICES / 100);
                plan
            })
        },
    );
    group.finish();
}

criterion_group!(pure, benchmarks);
criterion_main!(pure);
