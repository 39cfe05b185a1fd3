//! `ipvs-agent plan`: what the agent would program from manifests, with
//! no kernel: `ipvsadm -Sn` rules, the `ipvsadm -Ln` table followed by the
//! `kube-ipvs0` addresses, or JSON. The rendering is pure: a table in,
//! text out.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use netlink_ipvs::format::{format_list, format_save, IpvsListOptions};
use netlink_ipvs::{
    IpvsForwardingMethod, IpvsInfo, IpvsProtocol, IpvsServiceFlags, IpvsServiceKey, IpvsTableEntry,
};
use serde_json::{json, Value};

use crate::desired::desired_state;
use crate::model::ip_family::choose_ip_family;
use crate::model::netfilter::{NetfilterFamily, NetfilterSet, SetElements};
use crate::model::settings::IpFamilyMode;
use crate::model::{LocalAddress, NodeContext, ProxySettings, Table};
use crate::sources::manifests::{load_manifests, ManifestError};
use crate::system::netfilter::script::element_text;

/// What `plan` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    /// The `ipvsadm -Ln` table, then the kube-ipvs0 addresses.
    Text,
    /// Exactly what `ipvsadm -Sn` would print.
    Save,
    /// Both, machine-readable.
    Json,
}

/// What `plan` found.
#[derive(Debug, Clone)]
pub struct PlanOutput {
    /// The text to print.
    pub text: String,
    /// Every object or field skipped, named.
    pub problems: Vec<String>,
    /// Whether nothing at all could be read (problems only): a failure.
    pub nothing_read: bool,
}

/// The plan for the objects in `manifests` on the node `node_name` whose
/// addresses are `node_addresses` (no kernel to ask: those are its only
/// addresses). The node's zone, for topology hints, is the
/// `topology.kubernetes.io/zone` label of the manifests' Node object named
/// `node_name`, if there is one. `ip_family` is `--ip-family` as given:
/// without it the families are chosen as `run` chooses them
/// ([`choose_ip_family`]) from `node_addresses` and the InternalIPs of the
/// manifests' Node object named `node_name`, taking the kernel to have
/// IPv6 (there is no kernel to ask).
pub fn plan(
    manifests: &[PathBuf],
    node_name: String,
    node_addresses: &[IpAddr],
    settings: &ProxySettings,
    ip_family: Option<IpFamilyMode>,
    format: PlanFormat,
) -> Result<PlanOutput, ManifestError> {
    let loaded = load_manifests(manifests)?;
    let mut settings = settings.clone();
    settings.ip_family = ip_family.unwrap_or_else(|| {
        let node_object = loaded.addresses_of_node(&node_name);
        choose_ip_family(node_addresses, &node_object, true).mode
    });
    let settings = &settings;
    let node = NodeContext {
        zone: loaded.zone_of_node(&node_name),
        name: node_name,
        primary_addresses: node_addresses.to_vec(),
        local_addresses: node_addresses
            .iter()
            .map(|address| LocalAddress {
                address: *address,
                interface: String::new(),
            })
            .collect(),
    };
    let mut problems: Vec<String> = loaded.problems.iter().map(ToString::to_string).collect();
    let state = desired_state(&loaded.cluster, &node, settings);
    problems.extend(state.problems().iter().map(ToString::to_string));
    let table = state.table();
    let bound = state.bound_addresses();
    let text = match format {
        PlanFormat::Save => render_save(&table),
        PlanFormat::Text => render_text(&table, &bound),
        PlanFormat::Json => {
            let elements: SetElements = state
                .services
                .values()
                .flat_map(|service| service.elements.iter().copied())
                .collect();
            let json = render_json(&table, &bound, &elements, &problems);
            format!("{json:#}\n")
        }
    };
    let nothing_read = loaded.cluster.services().is_empty()
        && loaded.cluster.endpoint_slices().is_empty()
        && loaded.cluster.endpoints().is_empty()
        && !loaded.problems.is_empty();
    Ok(PlanOutput {
        text,
        problems,
        nothing_read,
    })
}

/// The version and connection table size printed in `text`'s header when
/// there is no kernel to ask: those of a stock kernel (IPVS 1.2.1, 4096).
pub const PLAN_INFO: IpvsInfo = IpvsInfo {
    version: 0x010201,
    connection_table_size: 4096,
};

/// The table as a list of entries (the formatter's input).
pub fn table_entries(table: &Table) -> Vec<IpvsTableEntry> {
    table
        .values()
        .map(|entry| IpvsTableEntry {
            service: entry.service.clone(),
            destinations: entry.real_servers.values().cloned().collect(),
        })
        .collect()
}

/// Exactly what `ipvsadm -Sn` would print for `table`.
pub fn render_save(table: &Table) -> String {
    format_save(&table_entries(table))
}

/// `ipvsadm -Ln` for `table`, then the addresses for `kube-ipvs0`.
pub fn render_text(table: &Table, bound_addresses: &BTreeSet<IpAddr>) -> String {
    let mut text = format_list(
        &PLAN_INFO,
        &table_entries(table),
        &IpvsListOptions::default(),
    );
    text.push_str("\nkube-ipvs0 addresses:\n");
    for address in bound_addresses {
        let prefix = if address.is_ipv4() { 32 } else { 128 };
        text.push_str(&format!("  {address}/{prefix}\n"));
    }
    text
}

fn protocol_name(protocol: IpvsProtocol) -> String {
    match protocol {
        IpvsProtocol::Tcp => "TCP".to_owned(),
        IpvsProtocol::Udp => "UDP".to_owned(),
        IpvsProtocol::Sctp => "SCTP".to_owned(),
        IpvsProtocol::Other(number) => number.to_string(),
        other => format!("{other:?}"),
    }
}

fn forwarding_name(forwarding: IpvsForwardingMethod) -> String {
    match forwarding {
        IpvsForwardingMethod::Masquerade => "masquerade".to_owned(),
        IpvsForwardingMethod::Local => "local".to_owned(),
        IpvsForwardingMethod::Tunnel => "tunnel".to_owned(),
        IpvsForwardingMethod::DirectRoute => "route".to_owned(),
        IpvsForwardingMethod::Bypass => "bypass".to_owned(),
        other => format!("{other:?}"),
    }
}

/// The desired state as JSON: `virtualServers` (sorted by key),
/// `kubeIpvs0Addresses`, `netfilterSets` (per table family, `ip` / `ip6`,
/// every set of the agent's table with its elements as `nft list` writes
/// them, sorted) and the `problems` that made objects be skipped.
pub fn render_json(
    table: &Table,
    bound_addresses: &BTreeSet<IpAddr>,
    elements: &SetElements,
    problems: &[String],
) -> Value {
    let virtual_servers: Vec<Value> = table
        .values()
        .map(|entry| {
            let service = &entry.service;
            let (protocol, address, port, fwmark) = match service.key {
                IpvsServiceKey::Inet {
                    protocol,
                    address,
                    port,
                } => (
                    Value::from(protocol_name(protocol)),
                    Value::from(address.to_string()),
                    Value::from(port),
                    Value::Null,
                ),
                IpvsServiceKey::Fwmark { mark, .. } => {
                    (Value::Null, Value::Null, Value::Null, Value::from(mark))
                }
            };
            let persistent = service.flags.0 & IpvsServiceFlags::PERSISTENT != 0;
            let real_servers: Vec<Value> = entry
                .real_servers
                .values()
                .map(|real| {
                    json!({
                        "address": real.key.address.to_string(),
                        "port": real.key.port,
                        "weight": real.weight,
                        "forwarding": forwarding_name(real.forwarding),
                    })
                })
                .collect();
            json!({
                "protocol": protocol,
                "address": address,
                "port": port,
                "fwmark": fwmark,
                "scheduler": service.scheduler,
                "persistent": persistent,
                "timeoutSeconds": service.timeout,
                "realServers": real_servers,
            })
        })
        .collect();
    let mut sets = serde_json::Map::new();
    for family in NetfilterFamily::ALL {
        let of_family: serde_json::Map<String, Value> = NetfilterSet::ALL
            .into_iter()
            .map(|set| {
                let mut texts: Vec<String> = elements
                    .iter()
                    .filter(|element| element.family == family && element.set == set)
                    .map(|element| element_text(&element.key))
                    .collect();
                texts.sort();
                (set.name().to_owned(), Value::from(texts))
            })
            .collect();
        sets.insert(family.nft_name().to_owned(), Value::Object(of_family));
    }
    json!({
        "virtualServers": virtual_servers,
        "kubeIpvs0Addresses": bound_addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "netfilterSets": sets,
        "problems": problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::netfilter::{ElementKey, SetElement};
    use crate::model::TableEntry;
    use netlink_ipvs::{IpvsDestination, IpvsService};

    fn sample() -> (Table, BTreeSet<IpAddr>) {
        let key = IpvsServiceKey::tcp("10.1.115.75".parse().unwrap(), 80);
        let real_servers = ["10.244.1.55", "10.244.1.54"]
            .iter()
            .map(|address| {
                let real = IpvsDestination::new(
                    address.parse().unwrap(),
                    9376,
                    IpvsForwardingMethod::Masquerade,
                    1,
                );
                (real.key, real)
            })
            .collect();
        let table = [(
            key,
            TableEntry {
                service: IpvsService::new(key, "rr"),
                real_servers,
            },
        )]
        .into();
        (table, ["10.1.115.75".parse().unwrap()].into())
    }

    #[test]
    fn save_is_ipvsadm_rules() {
        let (table, _) = sample();
        assert_eq!(
            render_save(&table),
            "-A -t 10.1.115.75:80 -s rr\n\
             -a -t 10.1.115.75:80 -r 10.244.1.54:9376 -m -w 1\n\
             -a -t 10.1.115.75:80 -r 10.244.1.55:9376 -m -w 1\n"
        );
    }

    #[test]
    fn text_is_the_list_then_the_addresses() {
        let (table, bound) = sample();
        let text = render_text(&table, &bound);
        assert!(
            text.starts_with("IP Virtual Server version 1.2.1 (size=4096)\n"),
            "{text}"
        );
        assert!(text.contains("TCP  10.1.115.75:80 rr\n"), "{text}");
        assert!(
            text.ends_with("\nkube-ipvs0 addresses:\n  10.1.115.75/32\n"),
            "{text}"
        );
    }

    #[test]
    fn json_has_servers_addresses_and_problems() {
        let (table, bound) = sample();
        let elements: SetElements = [SetElement {
            family: NetfilterFamily::Ipv4,
            set: NetfilterSet::ClusterIps,
            key: ElementKey::Service {
                address: "10.1.115.75".parse().unwrap(),
                protocol: IpvsProtocol::Tcp,
                port: 80,
            },
        }]
        .into();
        let value = render_json(&table, &bound, &elements, &["a problem".to_owned()]);
        assert_eq!(value["virtualServers"][0]["address"], "10.1.115.75");
        assert_eq!(value["virtualServers"][0]["protocol"], "TCP");
        assert_eq!(
            value["virtualServers"][0]["realServers"][0]["address"],
            "10.244.1.54"
        );
        assert_eq!(value["virtualServers"][0]["realServers"][1]["weight"], 1);
        assert_eq!(value["kubeIpvs0Addresses"][0], "10.1.115.75");
        assert_eq!(
            value["netfilterSets"]["ip"]["cluster-ips"][0],
            "10.1.115.75 . tcp . 80"
        );
        assert_eq!(value["netfilterSets"]["ip"]["vips"], json!([]));
        assert_eq!(value["netfilterSets"]["ip6"]["cluster-ips"], json!([]));
        assert_eq!(value["problems"][0], "a problem");
    }
}
