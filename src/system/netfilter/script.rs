//! The nft scripts the agent sends (`nft -f -`, one transaction each):
//! the fixed rules of its table, rendered from the settings, and element
//! changes. Pure: tested here by their text, and in the guest by `nft`
//! accepting them and by the traffic they carry.
//!
//! The rules, per family (`ip`/`ip6 ipvs-agent`), in the packet's order
//! (kube-proxy's IPVS-mode chains in brackets, `../shared/docs/datapath.md`):
//!
//! - `firewall` (filter prerouting, before NAT) [KUBE-LOAD-BALANCER-FW]:
//!   traffic to a LoadBalancer IP with source ranges from a source outside
//!   them is dropped. Node-originated traffic is not filtered.
//! - `nat-prerouting`, `nat-output` → `services` [KUBE-SERVICES]: no
//!   masquerade from loopback; ClusterIP traffic → `cluster-ip`;
//!   externalIP, LoadBalancer and (to a local address) NodePort traffic
//!   of Cluster-policy Services is marked.
//! - `cluster-ip`: marks what the local-traffic detector says is not
//!   from the cluster (or everything with `--masquerade-all`; or, with no
//!   detector, node-originated traffic, whose source is a VIP).
//! - `mark-for-masquerade` [KUBE-MARK-MASQ]: sets the masquerade bit.
//! - `nat-postrouting` [KUBE-POSTROUTING]: hairpin → masquerade; marked →
//!   clear the bit, masquerade `fully-random`.
//! - `filter-input` → `vip-filter` [KUBE-IPVS-FILTER]: a new TCP, UDP or
//!   SCTP connection to an address on `kube-ipvs0` on a port that is no
//!   Service there is rejected (ICMP, such as ping, is left alone);
//!   health-check ports accepted.
//! - `filter-forward` [KUBE-FORWARD]: marked and established traffic
//!   accepted.
//!
//! A rules script adds the table, chains and sets (idempotent), flushes
//! every chain and adds the rules again, all in one transaction: the
//! rules are replaced atomically, so a restart never leaves a gap.

use std::fmt::Write as _;
use std::net::IpAddr;

use netlink_ipvs::IpvsProtocol;

use crate::model::netfilter::{
    ElementKey, ElementShape, NetfilterFamily, NetfilterSet, SetElement, NETFILTER_TABLE,
};
use crate::model::settings::{DatapathSettings, LocalTrafficDetector};

/// A chain of the agent's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainSpec {
    /// Its name.
    pub name: &'static str,
    /// `type T hook H priority P`, for a base chain.
    pub hook: Option<&'static str>,
}

/// Every chain of the table (regular chains first: base chains jump to
/// them).
pub const CHAINS: [ChainSpec; 10] = [
    ChainSpec {
        name: "mark-for-masquerade",
        hook: None,
    },
    ChainSpec {
        name: "cluster-ip",
        hook: None,
    },
    ChainSpec {
        name: "services",
        hook: None,
    },
    ChainSpec {
        name: "vip-filter",
        hook: None,
    },
    ChainSpec {
        name: "firewall",
        hook: Some("type filter hook prerouting priority -110"),
    },
    ChainSpec {
        name: "nat-prerouting",
        hook: Some("type nat hook prerouting priority -100"),
    },
    ChainSpec {
        name: "nat-output",
        hook: Some("type nat hook output priority -100"),
    },
    ChainSpec {
        name: "nat-postrouting",
        hook: Some("type nat hook postrouting priority 100"),
    },
    ChainSpec {
        name: "filter-input",
        hook: Some("type filter hook input priority 0"),
    },
    ChainSpec {
        name: "filter-forward",
        hook: Some("type filter hook forward priority 0"),
    },
];

/// The names of every chain.
pub fn chain_names() -> impl Iterator<Item = &'static str> {
    CHAINS.iter().map(|chain| chain.name)
}

fn address_type(family: NetfilterFamily) -> &'static str {
    match family {
        NetfilterFamily::Ipv4 => "ipv4_addr",
        NetfilterFamily::Ipv6 => "ipv6_addr",
    }
}

/// The `type ...` (and flags) of `set` in `family`'s table.
pub fn set_type(family: NetfilterFamily, set: NetfilterSet) -> String {
    let address = address_type(family);
    match set.shape() {
        ElementShape::Service => format!("type {address} . inet_proto . inet_service"),
        ElementShape::ServiceSource => {
            format!("type {address} . inet_proto . inet_service . {address}; flags interval")
        }
        ElementShape::ProtocolPort => "type inet_proto . inet_service".to_owned(),
        ElementShape::Port => "type inet_service".to_owned(),
        ElementShape::AddressPair => format!("type {address} . {address}"),
        ElementShape::Address => format!("type {address}"),
    }
}

/// nft's datatype numbers (nftables' `datatype.h`), as the kernel keeps
/// a set's `NFTA_SET_KEY_TYPE`: a concatenation packs them 6 bits each.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;

/// What the kernel reports for a set the agent declared: key type, key
/// length and whether it is an interval set.
pub fn expected_key(family: NetfilterFamily, set: NetfilterSet) -> (u32, u32, bool) {
    let (address, address_len) = match family {
        NetfilterFamily::Ipv4 => (TYPE_IPADDR, 4),
        NetfilterFamily::Ipv6 => (TYPE_IP6ADDR, 16),
    };
    let concat = |types: &[u32]| types.iter().fold(0u32, |key, t| (key << 6) | t);
    match set.shape() {
        ElementShape::Service => (
            concat(&[address, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]),
            address_len + 8,
            false,
        ),
        ElementShape::ServiceSource => (
            concat(&[address, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE, address]),
            2 * address_len + 8,
            true,
        ),
        ElementShape::ProtocolPort => (concat(&[TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]), 8, false),
        ElementShape::Port => (TYPE_INET_SERVICE, 2, false),
        ElementShape::AddressPair => (concat(&[address, address]), 2 * address_len, false),
        ElementShape::Address => (address, address_len, false),
    }
}

fn protocol_name(protocol: IpvsProtocol) -> String {
    match protocol {
        IpvsProtocol::Tcp => "tcp".to_owned(),
        IpvsProtocol::Udp => "udp".to_owned(),
        IpvsProtocol::Sctp => "sctp".to_owned(),
        other => u16::from(other).to_string(),
    }
}

fn range(first: IpAddr, last: IpAddr) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

/// An element as nft writes it (`10.96.0.10 . tcp . 80`).
pub fn element_text(key: &ElementKey) -> String {
    match key {
        ElementKey::Service {
            address,
            protocol,
            port,
        } => format!("{address} . {} . {port}", protocol_name(*protocol)),
        ElementKey::ServiceSource {
            address,
            protocol,
            port,
            first,
            last,
        } => format!(
            "{address} . {} . {port} . {}",
            protocol_name(*protocol),
            range(*first, *last)
        ),
        ElementKey::ProtocolPort { protocol, port } => {
            format!("{} . {port}", protocol_name(*protocol))
        }
        ElementKey::Port(port) => port.to_string(),
        ElementKey::AddressPair(address) => format!("{address} . {address}"),
        ElementKey::Address(address) => address.to_string(),
    }
}

/// How many elements go on one `add element` line.
const ELEMENTS_PER_LINE: usize = 512;

/// Appends `verb element` lines (`add`, `delete`) for `elements`, grouped
/// by family and set (they must be sorted that way, as a `BTreeSet` of
/// [`SetElement`] is).
pub fn write_elements<'a>(
    script: &mut String,
    verb: &str,
    elements: impl IntoIterator<Item = &'a SetElement>,
) {
    let mut current: Option<(NetfilterFamily, NetfilterSet)> = None;
    let mut on_line = 0;
    for element in elements {
        let group = (element.family, element.set);
        if current != Some(group) || on_line == ELEMENTS_PER_LINE {
            if current.is_some() {
                script.push_str(" }\n");
            }
            let _ = write!(
                script,
                "{verb} element {} {NETFILTER_TABLE} {} {{ ",
                element.family.nft_name(),
                element.set.name()
            );
            current = Some(group);
            on_line = 0;
        } else {
            script.push_str(", ");
        }
        script.push_str(&element_text(&element.key));
        on_line += 1;
    }
    if current.is_some() {
        script.push_str(" }\n");
    }
}

/// What a rules script must also remove: chains and sets of an older
/// table that differ from the agent's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleObjects {
    /// Chains in the kernel's table that the agent no longer has.
    pub chains: Vec<String>,
    /// The agent's sets whose type in the kernel differs (deleted and
    /// declared again, empty).
    pub sets: Vec<NetfilterSet>,
}

/// Appends the script that makes `family`'s table hold exactly the
/// agent's chains, sets and rules (elements of sets that stay are kept).
pub fn write_rules(
    script: &mut String,
    family: NetfilterFamily,
    settings: &DatapathSettings,
    stale: &StaleObjects,
) {
    let table = format!("{} {NETFILTER_TABLE}", family.nft_name());
    let _ = writeln!(script, "add table {table}");
    for chain in &CHAINS {
        match chain.hook {
            Some(hook) => {
                let _ = writeln!(
                    script,
                    "add chain {table} {} {{ {hook}; policy accept; }}",
                    chain.name
                );
            }
            None => {
                let _ = writeln!(script, "add chain {table} {}", chain.name);
            }
        }
        let _ = writeln!(script, "flush chain {table} {}", chain.name);
    }
    for chain in &stale.chains {
        let _ = writeln!(script, "flush chain {table} {chain}");
        let _ = writeln!(script, "delete chain {table} {chain}");
    }
    for set in &stale.sets {
        let _ = writeln!(script, "delete set {table} {}", set.name());
    }
    for set in NetfilterSet::ALL {
        let _ = writeln!(
            script,
            "add set {table} {} {{ {}; }}",
            set.name(),
            set_type(family, set)
        );
    }
    for (chain, rule) in rules(family, settings) {
        let _ = writeln!(script, "add rule {table} {chain} {rule}");
    }
}

/// One transaction on the agent's tables: rules written again (with what
/// of the old table goes), then elements removed, then added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    /// Families whose rules are written, with their stale objects.
    pub rules: Vec<(NetfilterFamily, StaleObjects)>,
    /// Elements removed.
    pub remove: Vec<SetElement>,
    /// Elements added.
    pub add: Vec<SetElement>,
}

impl Transaction {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.remove.is_empty() && self.add.is_empty()
    }

    /// The transaction as transactions of at most `max_elements` element
    /// changes each, in order: the rules and the first changes, then the
    /// rest, every removal before every addition (an interval set refuses
    /// a range overlapping one still in it). One transaction of the
    /// whole: nft holds a parsed element (about 1 KiB) for every element
    /// of its script until it commits, which for a first sync at 20,000
    /// Services (240,000 elements) was 220 MiB in the agent's container,
    /// beside the agent, past the DaemonSet's memory limit. Each part is
    /// still one transaction: it commits whole or not at all.
    pub fn split(self, max_elements: usize) -> Vec<Transaction> {
        let max_elements = max_elements.max(1);
        let mut parts = vec![Transaction {
            rules: self.rules,
            ..Transaction::default()
        }];
        for (element, removed) in self
            .remove
            .into_iter()
            .map(|element| (element, true))
            .chain(self.add.into_iter().map(|element| (element, false)))
        {
            let last = parts.last_mut().expect("parts start with one");
            if last.remove.len() + last.add.len() == max_elements {
                parts.push(Transaction::default());
            }
            let last = parts.last_mut().expect("parts start with one");
            if removed {
                last.remove.push(element);
            } else {
                last.add.push(element);
            }
        }
        parts
    }

    /// The transaction as one nft script.
    pub fn script(&self, settings: &DatapathSettings) -> String {
        let mut script = String::new();
        for (family, stale) in &self.rules {
            write_rules(&mut script, *family, settings, stale);
        }
        write_elements(&mut script, "delete", &self.remove);
        write_elements(&mut script, "add", &self.add);
        script
    }
}

/// The rules of `family`'s table, chain by chain, in order.
pub fn rules(family: NetfilterFamily, settings: &DatapathSettings) -> Vec<(&'static str, String)> {
    let ip = family.nft_name();
    let mark = format!("{:#x}", settings.masquerade_mark());
    let clear = format!("{:#x}", !settings.masquerade_mark());
    let loopback = match family {
        NetfilterFamily::Ipv4 => "127.0.0.0/8",
        NetfilterFamily::Ipv6 => "::1",
    };
    let service =
        |set: NetfilterSet| format!("{ip} daddr . meta l4proto . th dport @{}", set.name());
    let mut rules: Vec<(&'static str, String)> = vec![
        (
            "mark-for-masquerade",
            format!("meta mark set meta mark | {mark}"),
        ),
        (
            "firewall",
            format!(
                "{} {ip} daddr . meta l4proto . th dport . {ip} saddr != @{} drop",
                service(NetfilterSet::FirewallIps),
                NetfilterSet::FirewallAllow.name()
            ),
        ),
        ("nat-prerouting", "jump services".to_owned()),
        ("nat-output", "jump services".to_owned()),
        ("services", format!("{ip} saddr {loopback} return")),
        (
            "services",
            format!("{} jump cluster-ip", service(NetfilterSet::ClusterIps)),
        ),
        (
            "services",
            format!(
                "{} jump mark-for-masquerade",
                service(NetfilterSet::ExternalIps)
            ),
        ),
        (
            "services",
            format!(
                "{} jump mark-for-masquerade",
                service(NetfilterSet::LoadBalancerIps)
            ),
        ),
        (
            "services",
            format!(
                "fib daddr type local meta l4proto . th dport @{} jump mark-for-masquerade",
                NetfilterSet::NodePorts.name()
            ),
        ),
    ];
    rules.push(("cluster-ip", cluster_ip_rule(family, settings)));
    rules.extend([
        (
            "nat-postrouting",
            format!(
                "{ip} saddr . {ip} daddr @{} masquerade",
                NetfilterSet::Hairpin.name()
            ),
        ),
        ("nat-postrouting", format!("meta mark & {mark} == 0 return")),
        (
            "nat-postrouting",
            format!("meta mark set meta mark & {clear}"),
        ),
        ("nat-postrouting", "masquerade fully-random".to_owned()),
        (
            "filter-input",
            format!(
                "ct state new {ip} daddr @{} jump vip-filter",
                NetfilterSet::Vips.name()
            ),
        ),
        (
            "filter-input",
            format!(
                "tcp dport @{} accept",
                NetfilterSet::HealthCheckPorts.name()
            ),
        ),
    ]);
    for set in [
        NetfilterSet::ClusterIps,
        NetfilterSet::ExternalIps,
        NetfilterSet::ExternalIpsLocal,
        NetfilterSet::LoadBalancerIps,
        NetfilterSet::LoadBalancerIpsLocal,
    ] {
        rules.push(("vip-filter", format!("{} return", service(set))));
    }
    rules.extend([
        (
            "vip-filter",
            format!(
                "tcp dport @{} return",
                NetfilterSet::HealthCheckPorts.name()
            ),
        ),
        (
            "vip-filter",
            "meta l4proto { tcp, udp, sctp } reject".to_owned(),
        ),
        ("filter-forward", format!("meta mark & {mark} != 0 accept")),
        (
            "filter-forward",
            "ct state related,established accept".to_owned(),
        ),
    ]);
    rules
}

/// The rule of `cluster-ip`: which ClusterIP traffic is marked.
fn cluster_ip_rule(family: NetfilterFamily, settings: &DatapathSettings) -> String {
    let ip = family.nft_name();
    let mark = "jump mark-for-masquerade";
    if settings.masquerade_all {
        return mark.to_owned();
    }
    let cidrs = |cidrs: &[ipnetwork::IpNetwork]| -> Vec<String> {
        cidrs
            .iter()
            .filter(|cidr| NetfilterFamily::of(&cidr.ip()) == family)
            .map(|cidr| cidr.to_string())
            .collect()
    };
    let from_vip = format!("{ip} saddr @{} {mark}", NetfilterSet::Vips.name());
    match &settings.local_detector {
        LocalTrafficDetector::ClusterCidr(list) | LocalTrafficDetector::NodeCidr(list) => {
            let list = cidrs(list);
            if list.is_empty() {
                from_vip
            } else {
                format!("{ip} saddr != {{ {} }} {mark}", list.join(", "))
            }
        }
        LocalTrafficDetector::BridgeInterface(name) => {
            format!("iifname != {} {mark}", quoted(name))
        }
        LocalTrafficDetector::InterfaceNamePrefix(prefix) => {
            format!("iifname != {} {mark}", quoted(&format!("{prefix}*")))
        }
        LocalTrafficDetector::None => from_vip,
    }
}

/// An interface name as an nft string (names cannot hold quotes: the
/// kernel limits them to 15 bytes without `"`; any that slips through is
/// dropped rather than breaking the script).
fn quoted(name: &str) -> String {
    let clean: String = name.chars().filter(|c| *c != '"' && *c != '\\').collect();
    format!("\"{clean}\"")
}

/// The script that removes the agent's table of `family`, whether or not
/// it exists (adding an empty table first makes the delete always valid).
pub fn delete_table(family: NetfilterFamily) -> String {
    let table = format!("{} {NETFILTER_TABLE}", family.nft_name());
    format!("add table {table}\ndelete table {table}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn element(set: NetfilterSet, key: ElementKey) -> SetElement {
        SetElement {
            family: NetfilterFamily::Ipv4,
            set,
            key,
        }
    }

    #[test]
    fn elements_are_written_grouped_by_set() {
        let service = |address: &str, port| ElementKey::Service {
            address: address.parse().unwrap(),
            protocol: IpvsProtocol::Tcp,
            port,
        };
        let elements: BTreeSet<SetElement> = [
            element(NetfilterSet::ClusterIps, service("10.96.0.10", 80)),
            element(NetfilterSet::ClusterIps, service("10.96.0.11", 53)),
            element(
                NetfilterSet::FirewallAllow,
                ElementKey::ServiceSource {
                    address: "192.0.2.10".parse().unwrap(),
                    protocol: IpvsProtocol::Udp,
                    port: 53,
                    first: "192.168.0.0".parse().unwrap(),
                    last: "192.168.255.255".parse().unwrap(),
                },
            ),
            element(
                NetfilterSet::NodePorts,
                ElementKey::ProtocolPort {
                    protocol: IpvsProtocol::Sctp,
                    port: 30000,
                },
            ),
            element(
                NetfilterSet::Hairpin,
                ElementKey::AddressPair("10.244.1.5".parse().unwrap()),
            ),
            element(NetfilterSet::HealthCheckPorts, ElementKey::Port(30256)),
            SetElement {
                family: NetfilterFamily::Ipv6,
                set: NetfilterSet::Vips,
                key: ElementKey::Address("fd00::10".parse().unwrap()),
            },
        ]
        .into();
        let mut script = String::new();
        write_elements(&mut script, "add", &elements);
        assert_eq!(
            script,
            "add element ip ipvs-agent cluster-ips { 10.96.0.10 . tcp . 80, 10.96.0.11 . tcp . 53 }\n\
             add element ip ipvs-agent firewall-allow { 192.0.2.10 . udp . 53 . 192.168.0.0-192.168.255.255 }\n\
             add element ip ipvs-agent node-ports { sctp . 30000 }\n\
             add element ip ipvs-agent health-check-ports { 30256 }\n\
             add element ip ipvs-agent hairpin { 10.244.1.5 . 10.244.1.5 }\n\
             add element ip6 ipvs-agent vips { fd00::10 }\n"
        );
    }

    #[test]
    fn transactions_are_split_into_parts_of_bounded_element_counts() {
        let port = |n: u16| element(NetfilterSet::HealthCheckPorts, ElementKey::Port(n));
        let stale = StaleObjects::default();
        let whole = || Transaction {
            rules: vec![(NetfilterFamily::Ipv4, stale.clone())],
            remove: (1..=3).map(port).collect(),
            add: (11..=15).map(port).collect(),
        };
        // (rules, removals, additions) of each part.
        type Sizes = Vec<(usize, usize, usize)>;
        let sizes = |parts: &[Transaction]| -> Sizes {
            parts
                .iter()
                .map(|part| (part.rules.len(), part.remove.len(), part.add.len()))
                .collect()
        };
        let cases: [(usize, Sizes); 4] = [
            (100, vec![(1, 3, 5)]),
            (8, vec![(1, 3, 5)]),
            (3, vec![(1, 3, 0), (0, 0, 3), (0, 0, 2)]),
            (2, vec![(1, 2, 0), (0, 1, 1), (0, 0, 2), (0, 0, 2)]),
        ];
        for (max, want) in cases {
            let parts = whole().split(max);
            assert_eq!(sizes(&parts), want, "at most {max}");
            // Same changes, same order: removals all before additions.
            let removed: Vec<SetElement> = parts.iter().flat_map(|p| p.remove.clone()).collect();
            let added: Vec<SetElement> = parts.iter().flat_map(|p| p.add.clone()).collect();
            assert_eq!((removed, added), (whole().remove, whole().add));
            let first_add = parts.iter().position(|p| !p.add.is_empty()).unwrap();
            assert!(parts[first_add + 1..].iter().all(|p| p.remove.is_empty()));
        }
        assert_eq!(
            Transaction::default().split(10),
            vec![Transaction::default()]
        );
        assert_eq!(whole().split(0).len(), 8, "at least one element per part");
    }

    #[test]
    fn long_element_lists_are_split_into_lines() {
        let elements: BTreeSet<SetElement> = (0..1100u16)
            .map(|port| element(NetfilterSet::HealthCheckPorts, ElementKey::Port(port + 1)))
            .collect();
        let mut script = String::new();
        write_elements(&mut script, "delete", &elements);
        assert_eq!(script.lines().count(), 3);
        assert!(script.lines().all(|line| line
            .starts_with("delete element ip ipvs-agent health-check-ports { ")
            && line.ends_with(" }")));
        assert_eq!(script.matches(", ").count() + 3, 1100);
    }

    #[test]
    fn the_cluster_ip_rule_follows_the_local_traffic_detector() {
        let with = |local_detector, masquerade_all| DatapathSettings {
            local_detector,
            masquerade_all,
            ..DatapathSettings::default()
        };
        let cidrs = vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00:10:244::/56".parse().unwrap(),
        ];
        let cases = [
            (
                with(LocalTrafficDetector::None, false),
                NetfilterFamily::Ipv4,
                "ip saddr @vips jump mark-for-masquerade",
            ),
            (
                with(LocalTrafficDetector::ClusterCidr(cidrs.clone()), false),
                NetfilterFamily::Ipv4,
                "ip saddr != { 10.244.0.0/16 } jump mark-for-masquerade",
            ),
            (
                with(LocalTrafficDetector::ClusterCidr(cidrs), false),
                NetfilterFamily::Ipv6,
                "ip6 saddr != { fd00:10:244::/56 } jump mark-for-masquerade",
            ),
            (
                with(
                    LocalTrafficDetector::ClusterCidr(vec!["10.244.0.0/16".parse().unwrap()]),
                    false,
                ),
                NetfilterFamily::Ipv6,
                "ip6 saddr @vips jump mark-for-masquerade",
            ),
            (
                with(LocalTrafficDetector::BridgeInterface("cbr0".into()), false),
                NetfilterFamily::Ipv4,
                "iifname != \"cbr0\" jump mark-for-masquerade",
            ),
            (
                with(
                    LocalTrafficDetector::InterfaceNamePrefix("cali".into()),
                    false,
                ),
                NetfilterFamily::Ipv4,
                "iifname != \"cali*\" jump mark-for-masquerade",
            ),
            (
                with(LocalTrafficDetector::None, true),
                NetfilterFamily::Ipv4,
                "jump mark-for-masquerade",
            ),
        ];
        for (settings, family, expected) in cases {
            assert_eq!(cluster_ip_rule(family, &settings), expected, "{settings:?}");
        }
    }

    #[test]
    fn the_masquerade_bit_sets_the_marks() {
        let settings = DatapathSettings {
            masquerade_bit: 5,
            ..DatapathSettings::default()
        };
        let rules = rules(NetfilterFamily::Ipv4, &settings);
        let text: Vec<String> = rules
            .iter()
            .map(|(chain, rule)| format!("{chain}: {rule}"))
            .collect();
        assert!(text.contains(&"mark-for-masquerade: meta mark set meta mark | 0x20".to_owned()));
        assert!(text.contains(&"nat-postrouting: meta mark set meta mark & 0xffffffdf".to_owned()));
        assert!(text.contains(&"filter-forward: meta mark & 0x20 != 0 accept".to_owned()));
        // Every rule sits in a chain the table declares.
        assert!(rules
            .iter()
            .all(|(chain, _)| chain_names().any(|name| name == *chain)));
    }

    #[test]
    fn a_rules_script_replaces_chains_and_recreates_stale_sets() {
        let mut script = String::new();
        write_rules(
            &mut script,
            NetfilterFamily::Ipv6,
            &DatapathSettings::default(),
            &StaleObjects {
                chains: vec!["old-chain".into()],
                sets: vec![NetfilterSet::Hairpin],
            },
        );
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[0], "add table ip6 ipvs-agent");
        let position = |line: &str| {
            lines
                .iter()
                .position(|l| *l == line)
                .unwrap_or_else(|| panic!("{line:?} missing from\n{script}"))
        };
        let flush = position("flush chain ip6 ipvs-agent nat-postrouting");
        let delete_chain = position("delete chain ip6 ipvs-agent old-chain");
        let delete_set = position("delete set ip6 ipvs-agent hairpin");
        let add_set = position("add set ip6 ipvs-agent hairpin { type ipv6_addr . ipv6_addr; }");
        let rule = position(
            "add rule ip6 ipvs-agent nat-postrouting ip6 saddr . ip6 daddr @hairpin masquerade",
        );
        assert!(
            flush < delete_chain
                && delete_chain < delete_set
                && delete_set < add_set
                && add_set < rule
        );
        assert!(script.contains(
            "add chain ip6 ipvs-agent nat-prerouting { type nat hook prerouting priority -100; policy accept; }"
        ));
        assert!(script.contains("add rule ip6 ipvs-agent services ip6 saddr ::1 return"));
    }

    #[test]
    fn expected_key_types_pack_concatenations() {
        // `type ipv4_addr . inet_proto . inet_service` as nft declares it.
        assert_eq!(
            expected_key(NetfilterFamily::Ipv4, NetfilterSet::ClusterIps),
            ((7 << 12) | (12 << 6) | 13, 12, false)
        );
        assert_eq!(
            expected_key(NetfilterFamily::Ipv6, NetfilterSet::FirewallAllow),
            ((((8 << 6 | 12) << 6 | 13) << 6) | 8, 40, true)
        );
        assert_eq!(
            expected_key(NetfilterFamily::Ipv4, NetfilterSet::HealthCheckPorts),
            (13, 2, false)
        );
    }
}
