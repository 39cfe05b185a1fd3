//! Which conntrack entries are stale: the pure half of the UDP and SCTP
//! conntrack cleanup (the entries come from `system::conntrack`'s dump).
//!
//! Followed: kube-proxy's `pkg/proxy/conntrack/cleanup.go`,
//! `CleanStaleEntries`, read at kubernetes/kubernetes commit 6a26e455
//! (the reconciler form kube-proxy has had since v1.31: the one that lists
//! the entries and deletes those whose original destination is a Service
//! IP or NodePort and whose reply source is not a serving endpoint), run
//! when `EndpointsMap.Update` reports `ConntrackCleanupRequired` (a UDP
//! Service port's endpoints changed). Here an entry is deleted when:
//!
//! - its protocol is UDP or SCTP,
//! - its original destination (address, port, protocol) is one of the
//!   agent's desired virtual servers (ClusterIP, externalIP, LB IP, or
//!   a NodePort on one node address), and
//! - its reply source (address and port) is not one of that virtual
//!   server's desired real servers. An entry whose reply source is the
//!   Service address itself (sent while the virtual server had no real
//!   server, so nothing rewrote it) is therefore deleted, whether the
//!   virtual server has real servers now or not, as kube-proxy does.
//!
//! Deliberate differences from kube-proxy:
//!
//! - Keyed per virtual server (address, port, protocol) and real server
//!   (address, port) rather than by Service IP alone (any port) or by
//!   NodePort number alone (any destination address): an entry to another
//!   port of a Service IP, or to the NodePort number on an address that
//!   is not a NodePort address, is not the agent's and is left alone.
//! - SCTP too (kube-proxy up to v1.30 cleared UDP and SCTP,
//!   `conntrack.IsClearConntrackNeeded`; the reconciler of v1.31 on does
//!   UDP only). TCP entries are never touched: TCP fails on its own.
//! - "Serving" is the desired real servers of that virtual server, not
//!   every serving endpoint of the Service port: kube-proxy keeps entries
//!   to serving endpoints that traffic policy or topology excluded, or
//!   terminating ones while ready ones exist, so that "changes to the
//!   service do not affect existing flows". Under IPVS such a flow is
//!   dead anyway: the agent deletes a UDP or SCTP real server at once
//!   (no drain, as kube-proxy), and with `expire_nodest_conn=1` IPVS
//!   drops every further packet of a connection to a deleted real server
//!   while the conntrack entry stays confirmed, which is the blackhole of
//!   kubernetes#125467. Removing the entry lets the next packet be
//!   scheduled afresh. Weight-0 (draining) real servers occur for TCP
//!   only, which this never looks at; a desired real server counts as
//!   serving whatever its weight.

use std::collections::BTreeSet;

use netlink_ipvs::{IpvsDestinationKey, IpvsProtocol, IpvsServiceKey};

use crate::model::conntrack::ConntrackEntry;
use crate::model::{Table, TableEntry};

/// The protocols whose stale entries are deleted.
pub const CLEANED_PROTOCOLS: [IpvsProtocol; 2] = [IpvsProtocol::Udp, IpvsProtocol::Sctp];

/// Whether entries of a virtual server of this key are ever cleaned.
pub fn is_cleaned(key: &IpvsServiceKey) -> bool {
    matches!(key, IpvsServiceKey::Inet { protocol, .. } if CLEANED_PROTOCOLS.contains(protocol))
}

/// The entries of `entries` to delete, given the desired table `wanted`.
pub fn stale_entries<'a>(
    wanted: &Table,
    entries: impl IntoIterator<Item = &'a ConntrackEntry>,
) -> Vec<ConntrackEntry> {
    entries
        .into_iter()
        .filter(|entry| CLEANED_PROTOCOLS.contains(&entry.protocol))
        .filter(|entry| {
            let key = IpvsServiceKey::Inet {
                protocol: entry.protocol,
                address: entry.destination,
                port: entry.destination_port,
            };
            wanted.get(&key).is_some_and(|virtual_server| {
                !virtual_server
                    .real_servers
                    .contains_key(&IpvsDestinationKey {
                        address: entry.reply_source,
                        port: entry.reply_source_port,
                    })
            })
        })
        .copied()
        .collect()
}

/// Whether a sync of the virtual servers `keys` from `kernel` (the view
/// before it) to `wanted` calls for a cleanup, as kube-proxy's
/// `ConntrackCleanupRequired` does but per virtual server: a UDP or SCTP
/// virtual server got its first real server (or appeared with some), or
/// lost any.
pub fn cleanup_needed(wanted: &Table, kernel: &Table, keys: &BTreeSet<IpvsServiceKey>) -> bool {
    keys.iter().filter(|key| is_cleaned(key)).any(|key| {
        let real_servers = |entry: Option<&TableEntry>| {
            entry
                .map(|entry| entry.real_servers.keys().copied().collect::<BTreeSet<_>>())
                .unwrap_or_default()
        };
        let after = real_servers(wanted.get(key));
        let before = real_servers(kernel.get(key));
        let first = before.is_empty() && !after.is_empty();
        let lost = wanted.contains_key(key) && before.iter().any(|real| !after.contains(real));
        first || lost
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    use netlink_ipvs::{IpvsDestination, IpvsForwardingMethod, IpvsService};

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn key(protocol: IpvsProtocol, address: &str, port: u16) -> IpvsServiceKey {
        IpvsServiceKey::Inet {
            protocol,
            address: ip(address),
            port,
        }
    }

    fn virtual_server(
        key: IpvsServiceKey,
        real_servers: &[(&str, u16)],
    ) -> (IpvsServiceKey, TableEntry) {
        let real_servers: BTreeMap<_, _> = real_servers
            .iter()
            .map(|(address, port)| {
                let destination =
                    IpvsDestination::new(ip(address), *port, IpvsForwardingMethod::Masquerade, 1);
                (destination.key, destination)
            })
            .collect();
        (
            key,
            TableEntry {
                service: IpvsService::new(key, "rr"),
                real_servers,
            },
        )
    }

    const DNS: (&str, u16) = ("10.244.0.11", 53);
    const OTHER_DNS: (&str, u16) = ("10.244.1.12", 53);

    fn table() -> Table {
        [
            virtual_server(key(IpvsProtocol::Udp, "10.96.0.10", 53), &[DNS]),
            virtual_server(key(IpvsProtocol::Tcp, "10.96.0.10", 53), &[DNS]),
            virtual_server(key(IpvsProtocol::Udp, "10.96.0.20", 5000), &[]),
            virtual_server(key(IpvsProtocol::Udp, "192.168.50.11", 30053), &[DNS]),
            virtual_server(
                key(IpvsProtocol::Sctp, "10.96.0.30", 9999),
                &[("10.244.0.13", 9999)],
            ),
        ]
        .into_iter()
        .collect()
    }

    fn entry(
        protocol: IpvsProtocol,
        destination: &str,
        port: u16,
        reply: (&str, u16),
    ) -> ConntrackEntry {
        ConntrackEntry {
            protocol,
            source: ip("10.244.1.14"),
            destination: ip(destination),
            source_port: 40000,
            destination_port: port,
            reply_source: ip(reply.0),
            reply_source_port: reply.1,
            zone: None,
        }
    }

    #[test]
    fn stale_entries_are_those_to_a_virtual_server_not_answered_by_its_real_servers() {
        use IpvsProtocol::{Sctp, Tcp, Udp};
        let cases = [
            (
                "UDP, reply from a current real server: kept",
                entry(Udp, "10.96.0.10", 53, DNS),
                false,
            ),
            (
                "UDP, reply from a removed endpoint: deleted",
                entry(Udp, "10.96.0.10", 53, OTHER_DNS),
                true,
            ),
            (
                "UDP, reply from the right address on an old target port: deleted",
                entry(Udp, "10.96.0.10", 53, ("10.244.0.11", 5353)),
                true,
            ),
            (
                "UDP, not rewritten (reply from the VIP) while real servers exist: deleted",
                entry(Udp, "10.96.0.10", 53, ("10.96.0.10", 53)),
                true,
            ),
            (
                "UDP, not rewritten, virtual server still without real servers: deleted",
                entry(Udp, "10.96.0.20", 5000, ("10.96.0.20", 5000)),
                true,
            ),
            (
                "TCP, reply from a removed endpoint: never",
                entry(Tcp, "10.96.0.10", 53, OTHER_DNS),
                false,
            ),
            (
                "UDP to another port of a Service IP: not the agent's",
                entry(Udp, "10.96.0.10", 54, OTHER_DNS),
                false,
            ),
            (
                "UDP to an address that is no virtual server: never",
                entry(Udp, "8.8.8.8", 53, ("8.8.8.8", 53)),
                false,
            ),
            (
                "NodePort, reply from a current real server: kept",
                entry(Udp, "192.168.50.11", 30053, DNS),
                false,
            ),
            (
                "NodePort, reply from a removed endpoint: deleted",
                entry(Udp, "192.168.50.11", 30053, OTHER_DNS),
                true,
            ),
            (
                "the NodePort number on an address that is no NodePort address: never",
                entry(Udp, "192.168.50.99", 30053, OTHER_DNS),
                false,
            ),
            (
                "SCTP, reply from a removed endpoint: deleted",
                entry(Sctp, "10.96.0.30", 9999, OTHER_DNS),
                true,
            ),
            (
                "SCTP, reply from a current one: kept",
                entry(Sctp, "10.96.0.30", 9999, ("10.244.0.13", 9999)),
                false,
            ),
        ];
        let wanted = table();
        for (name, entry, deleted) in cases {
            let stale = stale_entries(&wanted, [&entry]);
            assert_eq!(!stale.is_empty(), deleted, "{name}");
        }
    }

    #[test]
    fn cleanup_is_needed_on_a_first_real_server_or_a_lost_one_of_udp_or_sctp() {
        let udp = key(IpvsProtocol::Udp, "10.96.0.10", 53);
        let tcp = key(IpvsProtocol::Tcp, "10.96.0.10", 53);
        let sctp = key(IpvsProtocol::Sctp, "10.96.0.30", 9999);
        let of =
            |entries: Vec<(IpvsServiceKey, TableEntry)>| -> Table { entries.into_iter().collect() };
        let cases = [
            (
                "unchanged",
                of(vec![virtual_server(udp, &[DNS])]),
                of(vec![virtual_server(udp, &[DNS])]),
                udp,
                false,
            ),
            (
                "first real server",
                of(vec![virtual_server(udp, &[DNS])]),
                of(vec![virtual_server(udp, &[])]),
                udp,
                true,
            ),
            (
                "new virtual server with real servers",
                of(vec![virtual_server(udp, &[DNS])]),
                Table::new(),
                udp,
                true,
            ),
            (
                "new virtual server without",
                of(vec![virtual_server(udp, &[])]),
                Table::new(),
                udp,
                false,
            ),
            (
                "a second real server",
                of(vec![virtual_server(udp, &[DNS, OTHER_DNS])]),
                of(vec![virtual_server(udp, &[DNS])]),
                udp,
                false,
            ),
            (
                "lost one",
                of(vec![virtual_server(udp, &[DNS])]),
                of(vec![virtual_server(udp, &[DNS, OTHER_DNS])]),
                udp,
                true,
            ),
            (
                "lost all",
                of(vec![virtual_server(udp, &[])]),
                of(vec![virtual_server(udp, &[DNS])]),
                udp,
                true,
            ),
            (
                "replaced",
                of(vec![virtual_server(udp, &[OTHER_DNS])]),
                of(vec![virtual_server(udp, &[DNS])]),
                udp,
                true,
            ),
            (
                "virtual server deleted: no entry can match it",
                Table::new(),
                of(vec![virtual_server(udp, &[DNS])]),
                udp,
                false,
            ),
            (
                "TCP lost one",
                of(vec![virtual_server(tcp, &[])]),
                of(vec![virtual_server(tcp, &[DNS])]),
                tcp,
                false,
            ),
            (
                "SCTP lost one",
                of(vec![virtual_server(sctp, &[])]),
                of(vec![virtual_server(sctp, &[DNS])]),
                sctp,
                true,
            ),
        ];
        for (name, wanted, kernel, key, needed) in cases {
            assert_eq!(
                cleanup_needed(&wanted, &kernel, &BTreeSet::from([key])),
                needed,
                "{name}"
            );
        }
    }
}
