// SPDX-License-Identifier: MIT

//! Test support: replays ipvsadm commands into our model the way ipvsadm
//! 1.31 fills its requests, then puts the table in the kernel's dump order
//! and gives it the counters ipvsadm read, both from captured listings.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::address::IpvsAddressFamily;
use crate::client::IpvsTableEntry;
use crate::dest::{IpvsDestination, IpvsForwardingMethod, IpvsTunnelFlags, IpvsTunnelType};
use crate::service::{IpvsNetmask, IpvsService, IpvsServiceFlags, IpvsServiceKey};
use crate::stats::IpvsStats;

/// ipvsadm's `IPVS_SVC_PERSISTENT_TIMEOUT` (`-p` without a value).
const DEFAULT_PERSISTENT_TIMEOUT: u32 = 360;

/// The `--nosort` listings captured with the expected outputs.
pub(super) struct Captured {
    /// `ipvsadm -Ln --nosort`: the kernel's order, connection counts.
    pub nosort: &'static str,
    /// `ipvsadm -Ln --stats --exact --nosort`: counters.
    pub nosort_stats_exact: &'static str,
    /// `ipvsadm -Ln --rate --exact --nosort`: rates.
    pub nosort_rate_exact: &'static str,
    /// `ipvsadm -Ln --persistent-conn --nosort`: persistence templates.
    pub nosort_persistent_conn: &'static str,
}

/// The table `commands` built, as the kernel dumped it for `captured`.
pub(super) fn replay(commands: &[&str], captured: &Captured) -> Vec<IpvsTableEntry> {
    let mut table: Vec<IpvsTableEntry> = Vec::new();
    for command in commands {
        apply(&mut table, command);
    }
    put_in_kernel_order(&mut table, captured.nosort);
    let connections = listing_rows(captured.nosort);
    let stats = listing_rows(captured.nosort_stats_exact);
    let rates = listing_rows(captured.nosort_rate_exact);
    let persistent = listing_rows(captured.nosort_persistent_conn);
    for entry in &mut table {
        let key = Row::Service(entry.service.key);
        entry.service.stats = Some(Box::new(counters(&stats[&key], &rates[&key])));
        for destination in &mut entry.destinations {
            let key = Row::Destination(
                entry.service.key,
                destination.key.address,
                destination.key.port,
            );
            let numbers = &connections[&key];
            destination.active_connections = numbers[1] as u32;
            destination.inactive_connections = numbers[2] as u32;
            destination.persistent_connections = persistent[&key][1] as u32;
            destination.stats = Some(Box::new(counters(&stats[&key], &rates[&key])));
        }
    }
    table
}

fn counters(stats: &[u64], rates: &[u64]) -> IpvsStats {
    IpvsStats {
        connections: stats[0],
        in_packets: stats[1],
        out_packets: stats[2],
        in_bytes: stats[3],
        out_bytes: stats[4],
        connection_rate: rates[0],
        in_packet_rate: rates[1],
        out_packet_rate: rates[2],
        in_byte_rate: rates[3],
        out_byte_rate: rates[4],
    }
}

/// One `ipvsadm -A` or `-a` command line, with ipvsadm's defaults:
/// scheduler `wlc`, weight 1, direct routing, the service's port for a
/// real server without one (and always for `-g` and `-i` on non-fwmark
/// services), persistence 360 s.
fn apply(table: &mut Vec<IpvsTableEntry>, command: &str) {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut key = None;
    let mut scheduler = "wlc".to_string();
    let mut flags = 0;
    let mut timeout = None;
    let mut netmask = None;
    let mut engine = None;
    let mut real = None;
    let mut forwarding = IpvsForwardingMethod::DirectRoute;
    let mut weight = 1;
    let mut thresholds = (0, 0);
    let mut tunnel = (IpvsTunnelType::Ipip, 0, IpvsTunnelFlags::default());
    let mut i = 1;
    while i < words.len() {
        let value = words.get(i + 1).copied().unwrap_or("");
        let mut used = true;
        match words[i] {
            "-t" => key = Some(inet_key(IpvsServiceKey::tcp, value)),
            "-u" => key = Some(inet_key(IpvsServiceKey::udp, value)),
            "--sctp-service" => key = Some(inet_key(IpvsServiceKey::sctp, value)),
            "-f" => {
                key = Some(IpvsServiceKey::Fwmark {
                    family: IpvsAddressFamily::Inet,
                    mark: value.parse().unwrap(),
                })
            }
            "-6" => {
                if let Some(IpvsServiceKey::Fwmark { mark, .. }) = key {
                    key = Some(IpvsServiceKey::Fwmark {
                        family: IpvsAddressFamily::Inet6,
                        mark,
                    });
                }
                used = false;
            }
            "-s" => scheduler = value.to_string(),
            "-p" => {
                flags |= IpvsServiceFlags::PERSISTENT;
                match value.parse() {
                    Ok(seconds) => timeout = Some(seconds),
                    Err(_) => {
                        timeout = Some(DEFAULT_PERSISTENT_TIMEOUT);
                        used = false;
                    }
                }
            }
            "-M" => {
                netmask = Some(match value.parse() {
                    Ok(mask) => IpvsNetmask::ipv4(mask),
                    Err(_) => IpvsNetmask::ipv6_prefix(value.parse().unwrap()),
                })
            }
            "--pe" => engine = Some(value.to_string()),
            "-o" => {
                flags |= IpvsServiceFlags::ONE_PACKET;
                used = false;
            }
            "-b" => {
                for name in value.split(',') {
                    flags |= match name {
                        "sh-fallback" | "mh-fallback" | "flag-1" => IpvsServiceFlags::SCHED1,
                        "sh-port" | "mh-port" | "flag-2" => IpvsServiceFlags::SCHED2,
                        "flag-3" => IpvsServiceFlags::SCHED3,
                        other => panic!("scheduler flag {other}"),
                    };
                }
            }
            "-r" => real = Some(value),
            "-m" | "-g" | "-i" => {
                forwarding = match words[i] {
                    "-m" => IpvsForwardingMethod::Masquerade,
                    "-g" => IpvsForwardingMethod::DirectRoute,
                    _ => IpvsForwardingMethod::Tunnel,
                };
                used = false;
            }
            "-w" => weight = value.parse().unwrap(),
            "-x" => thresholds.0 = value.parse().unwrap(),
            "-y" => thresholds.1 = value.parse().unwrap(),
            "--tun-type" => {
                tunnel.0 = match value {
                    "ipip" => IpvsTunnelType::Ipip,
                    "gue" => IpvsTunnelType::Gue,
                    "gre" => IpvsTunnelType::Gre,
                    other => panic!("tunnel type {other}"),
                }
            }
            "--tun-port" => tunnel.1 = value.parse().unwrap(),
            "--tun-nocsum" | "--tun-csum" | "--tun-remcsum" => {
                tunnel.2 = IpvsTunnelFlags(match words[i] {
                    "--tun-nocsum" => IpvsTunnelFlags::NO_CHECKSUM,
                    "--tun-csum" => IpvsTunnelFlags::CHECKSUM,
                    _ => IpvsTunnelFlags::REMOTE_CHECKSUM,
                });
                used = false;
            }
            other => panic!("option {other} in {command}"),
        }
        i += if used { 2 } else { 1 };
    }
    let key = key.expect("a service option");
    match words[0] {
        "-A" => {
            let mut service = IpvsService::new(key, scheduler);
            service.flags = IpvsServiceFlags(flags);
            if let Some(timeout) = timeout {
                service.timeout = timeout;
            }
            if let Some(netmask) = netmask {
                service.netmask = netmask;
            }
            service.persistence_engine = engine;
            table.push(IpvsTableEntry {
                service,
                destinations: Vec::new(),
            });
        }
        "-a" => {
            let (address, port) = split_address_port(real.expect("-r"));
            let service_port = match key {
                IpvsServiceKey::Inet { port, .. } => port,
                IpvsServiceKey::Fwmark { .. } => 0,
            };
            let forced = matches!(key, IpvsServiceKey::Inet { .. })
                && matches!(
                    forwarding,
                    IpvsForwardingMethod::DirectRoute | IpvsForwardingMethod::Tunnel
                );
            let port = if forced {
                service_port
            } else {
                port.unwrap_or(service_port)
            };
            let mut destination = IpvsDestination::new(address, port, forwarding, weight);
            destination.upper_threshold = thresholds.0;
            destination.lower_threshold = thresholds.1;
            destination.tunnel_type = tunnel.0;
            destination.tunnel_port = tunnel.1;
            destination.tunnel_flags = tunnel.2;
            let entry = table
                .iter_mut()
                .find(|entry| entry.service.key == key)
                .expect("the service exists");
            entry.destinations.push(destination);
        }
        other => panic!("command {other}"),
    }
}

fn inet_key(make: fn(IpAddr, u16) -> IpvsServiceKey, text: &str) -> IpvsServiceKey {
    let (address, port) = split_address_port(text);
    make(address, port.expect("a service port"))
}

/// `10.0.0.1:80`, `10.0.0.1`, `[2001:db8::1]:80`.
fn split_address_port(text: &str) -> (IpAddr, Option<u16>) {
    if let Some(rest) = text.strip_prefix('[') {
        let (address, port) = rest.split_once("]:").expect("[address]:port");
        return (address.parse().unwrap(), Some(port.parse().unwrap()));
    }
    match text.rsplit_once(':') {
        Some((address, port)) => (address.parse().unwrap(), Some(port.parse().unwrap())),
        None => (text.parse().unwrap(), None),
    }
}

/// A row of an ipvsadm listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Row {
    Service(IpvsServiceKey),
    Destination(IpvsServiceKey, IpAddr, u16),
}

/// The rows of an ipvsadm listing in order, with the numbers that end
/// each line (counters; or weight, active and inactive connections).
fn listing_rows_in_order(listing: &str) -> Vec<(Row, Vec<u64>)> {
    let mut rows = Vec::new();
    let mut service = None;
    for line in listing.lines().skip(3) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let numbers = |skip: usize| -> Vec<u64> {
            words[skip..]
                .iter()
                .filter_map(|w| w.parse().ok())
                .collect()
        };
        if words[0] == "->" {
            let (address, port) = split_address_port(words[1]);
            let key = service.expect("a service before its real servers");
            rows.push((Row::Destination(key, address, port.unwrap()), numbers(2)));
            continue;
        }
        let key = match words[0] {
            "FWM" => IpvsServiceKey::Fwmark {
                family: if words.get(2) == Some(&"IPv6") {
                    IpvsAddressFamily::Inet6
                } else {
                    IpvsAddressFamily::Inet
                },
                // Printed with `%d`.
                mark: words[1].parse::<i32>().unwrap() as u32,
            },
            protocol => {
                let make = match protocol {
                    "TCP" => IpvsServiceKey::tcp,
                    "UDP" => IpvsServiceKey::udp,
                    "SCTP" => IpvsServiceKey::sctp,
                    other => panic!("protocol {other}"),
                };
                inet_key(make, words[1])
            }
        };
        service = Some(key);
        rows.push((Row::Service(key), numbers(2)));
    }
    rows
}

fn listing_rows(listing: &str) -> HashMap<Row, Vec<u64>> {
    listing_rows_in_order(listing).into_iter().collect()
}

/// Orders services and real servers as they appear in `nosort`.
fn put_in_kernel_order(table: &mut [IpvsTableEntry], nosort: &str) {
    let order: Vec<Row> = listing_rows_in_order(nosort)
        .into_iter()
        .map(|(row, _)| row)
        .collect();
    let position = |row: &Row| {
        order
            .iter()
            .position(|r| r == row)
            .unwrap_or_else(|| panic!("{row:?} is not in the capture"))
    };
    table.sort_by_key(|entry| position(&Row::Service(entry.service.key)));
    for entry in table.iter_mut() {
        let service = entry.service.key;
        entry
            .destinations
            .sort_by_key(|d| position(&Row::Destination(service, d.key.address, d.key.port)));
    }
    assert_eq!(
        table.len() + table.iter().map(|e| e.destinations.len()).sum::<usize>(),
        order.len(),
        "the commands and the capture have the same rows"
    );
}
