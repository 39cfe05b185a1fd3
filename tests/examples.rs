//! The Service document's examples (`examples/*.yaml`) give exactly the
//! table kube-proxy's IPVS mode would program on node `node1` with address
//! 192.168.122.10, and bad input is reported with its file, object and
//! field.

use std::path::PathBuf;

use ipvs_agent::commands::plan::render_save;
use ipvs_agent::desired::desired_state;
use ipvs_agent::model::{LocalAddress, NodeContext, ProxySettings};
use ipvs_agent::sources::manifests::load_manifests;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn node() -> NodeContext {
    NodeContext {
        name: "node1".into(),
        zone: None,
        primary_addresses: vec!["192.168.122.10".parse().unwrap()],
        local_addresses: vec![LocalAddress {
            address: "192.168.122.10".parse().unwrap(),
            interface: "eth0".into(),
        }],
    }
}

fn plan(files: &[&str]) -> (String, Vec<String>, Vec<String>) {
    let paths: Vec<PathBuf> = files.iter().map(|f| root().join(f)).collect();
    let loaded = load_manifests(&paths).expect("examples are readable");
    let state = desired_state(&loaded.cluster, &node(), &ProxySettings::default());
    let mut problems: Vec<String> = loaded.problems.iter().map(ToString::to_string).collect();
    problems.extend(state.problems().iter().map(ToString::to_string));
    let bound = state
        .bound_addresses()
        .iter()
        .map(ToString::to_string)
        .collect();
    (render_save(&state.table()), bound, problems)
}

#[test]
fn hostname_service_has_its_three_pods() {
    let (save, bound, problems) = plan(&["examples/hostname.yaml"]);
    assert_eq!(
        save,
        "-A -t 10.1.115.75:80 -s rr\n\
         -a -t 10.1.115.75:80 -r 10.244.1.54:9376 -m -w 1\n\
         -a -t 10.1.115.75:80 -r 10.244.1.55:9376 -m -w 1\n\
         -a -t 10.1.115.75:80 -r 10.244.2.53:9376 -m -w 1\n"
    );
    assert_eq!(bound, vec!["10.1.115.75"]);
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn two_port_clusterip_and_selectorless_service_with_manual_endpoints() {
    let (save, bound, problems) = plan(&[
        "examples/nginx-1-clusterip.yaml",
        "examples/nginx-1-external.yaml",
    ]);
    assert_eq!(
        save,
        "-A -t 172.20.173.132:80 -s rr\n\
         -a -t 172.20.173.132:80 -r 10.244.1.30:80 -m -w 1\n\
         -A -t 172.20.173.132:443 -s rr\n\
         -a -t 172.20.173.132:443 -r 10.244.1.30:9377 -m -w 1\n\
         -A -t 172.20.226.170:80 -s rr\n\
         -a -t 172.20.226.170:80 -r 10.28.88.9:9000 -m -w 1\n\
         -a -t 172.20.226.170:80 -r 10.28.88.10:9000 -m -w 1\n\
         -a -t 172.20.226.170:80 -r 10.28.88.11:9000 -m -w 1\n\
         -a -t 172.20.226.170:80 -r 10.28.88.12:9000 -m -w 1\n"
    );
    assert_eq!(bound, vec!["172.20.173.132", "172.20.226.170"]);
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn nodeport_services_on_the_node_address() {
    let (save, bound, problems) = plan(&["examples/nodeport.yaml"]);
    assert_eq!(
        save,
        "-A -t 192.168.122.10:30000 -s rr\n\
         -a -t 192.168.122.10:30000 -r 10.244.1.20:80 -m -w 1\n\
         -A -t 10.1.46.104:8080 -s rr\n\
         -a -t 10.1.46.104:8080 -r 10.244.1.20:80 -m -w 1\n"
    );
    assert_eq!(bound, vec!["10.1.46.104"], "node addresses are never bound");
    assert!(problems.is_empty(), "{problems:?}");
    let (save, _, problems) = plan(&["examples/nodeport-my-nginx.yaml"]);
    assert!(
        save.contains("-A -t 192.168.122.10:31446 -s rr\n"),
        "{save}"
    );
    assert!(
        save.contains("-a -t 10.1.246.166:443 -r 10.244.2.40:443 -m -w 1\n"),
        "{save}"
    );
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn both_nodeport_examples_together_conflict_on_30000_and_say_so() {
    let (save, _, problems) = plan(&["examples/nodeport.yaml", "examples/nodeport-my-nginx.yaml"]);
    assert!(
        save.contains("-a -t 192.168.122.10:30000 -r 10.244.2.40:80 -m -w 1\n"),
        "my-nginx (first by name) keeps 30000: {save}"
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("Service default/nginx")
            && problems[0].contains("192.168.122.10:30000"),
        "{problems:?}"
    );
}

#[test]
fn externalips_headless_and_externalname() {
    let (save, bound, problems) = plan(&[
        "examples/externalips.yaml",
        "examples/headless.yaml",
        "examples/externalname.yaml",
    ]);
    assert_eq!(
        save,
        "-A -t 198.51.100.32:80 -s rr\n\
         -a -t 198.51.100.32:80 -r 10.244.3.10:9376 -m -w 1\n\
         -A -t 10.1.200.10:80 -s rr\n\
         -a -t 10.1.200.10:80 -r 10.244.3.10:9376 -m -w 1\n",
        "headless and ExternalName make nothing"
    );
    assert_eq!(bound, vec!["10.1.200.10", "198.51.100.32"]);
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn the_documents_apiversion_typo_is_reported_with_file_object_and_field() {
    let (save, _, problems) = plan(&["tests/manifests/typo-apiversion.yaml"]);
    assert_eq!(save, "");
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].ends_with(
            "tests/manifests/typo-apiversion.yaml: document 1: Service default/my-service: apiVersion: \"vl\" is not v1 (the Service is skipped)"
        ),
        "{problems:?}"
    );
}

#[test]
fn bad_objects_are_skipped_with_their_field_and_the_rest_loads() {
    let (save, _, problems) = plan(&["tests/manifests/mixed.yaml"]);
    assert_eq!(
        save, "-A -t 10.1.0.1:80 -s rr\n-A -u 10.1.0.3:443 -s rr\n",
        "the List item and the good Service load"
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0]
            .contains("document 2: Service default/bad-port: spec.ports[1].port: invalid type"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("document 3: not a Kubernetes object"),
        "{problems:?}"
    );
}

#[test]
fn a_directory_loads_every_yaml_file_in_it() {
    let loaded = load_manifests(&[root().join("examples")]).expect("readable");
    assert_eq!(loaded.files.len(), 8, "{:?}", loaded.files);
    assert_eq!(loaded.cluster.services().len(), 8);
    assert_eq!(loaded.cluster.endpoint_slices().len(), 6);
    assert_eq!(loaded.cluster.endpoints().len(), 1);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
}

/// `plan` on a directory with the node's Node object (zone-a) and a slice
/// hinted by zone: node1 gets only the zone-a endpoints, node2 (another
/// Node in the same files) only zone-b's, and a node with no Node object
/// there every endpoint.
#[test]
fn plan_follows_the_zone_hints_of_the_nodes_node_object() {
    use ipvs_agent::commands::plan::{plan, PlanFormat};
    let run = |node_name: &str| {
        let output = plan(
            &[root().join("tests/manifests/topology")],
            node_name.to_owned(),
            &["192.168.122.10".parse().unwrap()],
            &ProxySettings::default(),
            None,
            PlanFormat::Save,
        )
        .expect("the directory is readable");
        assert!(output.problems.is_empty(), "{:?}", output.problems);
        output.text
    };
    assert_eq!(
        run("node1"),
        "-A -t 10.96.0.20:80 -s rr\n\
         -a -t 10.96.0.20:80 -r 10.244.1.10:8080 -m -w 1\n\
         -a -t 10.96.0.20:80 -r 10.244.3.10:8080 -m -w 1\n"
    );
    assert_eq!(
        run("node2"),
        "-A -t 10.96.0.20:80 -s rr\n\
         -a -t 10.96.0.20:80 -r 10.244.2.10:8080 -m -w 1\n"
    );
    assert_eq!(
        run("node9"),
        "-A -t 10.96.0.20:80 -s rr\n\
         -a -t 10.96.0.20:80 -r 10.244.1.10:8080 -m -w 1\n\
         -a -t 10.96.0.20:80 -r 10.244.2.10:8080 -m -w 1\n\
         -a -t 10.96.0.20:80 -r 10.244.3.10:8080 -m -w 1\n"
    );
}

/// `plan` without `--ip-family` chooses the families as `run` does, from
/// `--node-ip`: both for addresses of both families (a single-stack IPv4
/// NodePort still only on the IPv4 address), IPv4 for an IPv4 address;
/// `--ip-family` wins.
#[test]
fn plan_chooses_the_families_from_the_node_addresses() {
    use ipvs_agent::commands::plan::{plan, PlanFormat};
    use ipvs_agent::model::settings::IpFamilyMode;
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("services.yaml"),
        "apiVersion: v1
kind: Service
metadata: {name: dual, namespace: default}
spec:
  clusterIPs: [10.96.0.20, \"fd00:96::20\"]
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: v4only, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.30
  ports: [{port: 80, nodePort: 30030}]
",
    )
    .unwrap();
    let run = |addresses: &[&str], ip_family: Option<IpFamilyMode>| {
        let addresses: Vec<std::net::IpAddr> =
            addresses.iter().map(|text| text.parse().unwrap()).collect();
        let output = plan(
            &[folder.path().to_path_buf()],
            "node1".to_owned(),
            &addresses,
            &ProxySettings::default(),
            ip_family,
            PlanFormat::Save,
        )
        .expect("the folder is readable");
        assert!(output.problems.is_empty(), "{:?}", output.problems);
        output.text
    };
    assert_eq!(
        run(&["192.168.122.10", "fd00::10"], None),
        "-A -t 192.168.122.10:30030 -s rr\n\
         -A -t 10.96.0.20:80 -s rr\n\
         -A -t 10.96.0.30:80 -s rr\n\
         -A -t [fd00:96::20]:80 -s rr\n",
        "both families; the IPv4-only NodePort not on fd00::10"
    );
    let v4 = "-A -t 192.168.122.10:30030 -s rr\n\
              -A -t 10.96.0.20:80 -s rr\n\
              -A -t 10.96.0.30:80 -s rr\n";
    assert_eq!(run(&["192.168.122.10"], None), v4);
    assert_eq!(
        run(&["192.168.122.10", "fd00::10"], Some(IpFamilyMode::Ipv4)),
        v4
    );
}
