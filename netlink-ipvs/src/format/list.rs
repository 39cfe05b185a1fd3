// SPDX-License-Identifier: MIT

//! `ipvsadm -L -n` and its column variants (`--stats`, `--rate`,
//! `--thresholds`, `--persistent-conn`, `--tun-info`): ipvsadm.c's
//! `list_all`, `list_service`, `print_title` and `print_service_entry`.

use std::fmt::Write;

use super::name::{
    address_port, forwarding_name, has_scheduler_flags, list_service_name, persistence_engine,
    persistence_mask, scheduler_flags, tunnel_info,
};
use super::number::push_large_number;
use super::sort::{sorted_destinations, sorted_entries};
use crate::client::IpvsTableEntry;
use crate::dest::IpvsDestination;
use crate::info::{IpvsInfo, IpvsVersion};
use crate::service::{IpvsService, IpvsServiceFlags};
use crate::stats::IpvsStats;

/// The options of `ipvsadm -L -n` that change what is printed.
///
/// As in ipvsadm, several column sets may be asked for at once; the first
/// of `stats`, `rate`, `thresholds`, `persistent_conn`, `tun_info` wins.
/// Addresses and ports are always numeric (`-n`): there is no name lookup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct IpvsListOptions {
    /// `--stats`: connections, packets and bytes.
    pub stats: bool,
    /// `--rate`: connections, packets and bytes per second.
    pub rate: bool,
    /// `--thresholds`: upper and lower connection thresholds.
    pub thresholds: bool,
    /// `--persistent-conn`: persistence templates.
    pub persistent_conn: bool,
    /// `--tun-info`: tunnel type, port and checksum flags.
    pub tun_info: bool,
    /// `--exact`: counters unscaled (no K, M, G, T).
    pub exact: bool,
    /// `--nosort`: services and real servers in the table's order (the
    /// kernel's, as [`crate::IpvsHandle::table`] returns it).
    pub nosort: bool,
}

/// The column set ipvsadm picks: its `FMT_*` tests, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Columns {
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    TunnelInfo,
    Default,
}

impl From<&IpvsListOptions> for Columns {
    fn from(options: &IpvsListOptions) -> Self {
        if options.stats {
            Self::Stats
        } else if options.rate {
            Self::Rate
        } else if options.thresholds {
            Self::Thresholds
        } else if options.persistent_conn {
            Self::PersistentConn
        } else if options.tun_info {
            Self::TunnelInfo
        } else {
            Self::Default
        }
    }
}

/// The text of `ipvsadm -L -n` (with the columns `options` select) for
/// `table`: the version line from `info`, the two title lines, then each
/// service and its real servers, sorted as ipvsadm sorts unless
/// `options.nosort`.
///
/// ```
/// use netlink_ipvs::format::{format_list, IpvsListOptions};
/// use netlink_ipvs::IpvsInfo;
///
/// let info = IpvsInfo { version: 0x010201, connection_table_size: 4096 };
/// let text = format_list(&info, &[], &IpvsListOptions::default());
/// assert_eq!(
///     text,
///     "IP Virtual Server version 1.2.1 (size=4096)\n\
///      Prot LocalAddress:Port Scheduler Flags\n  \
///      -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
/// );
/// ```
pub fn format_list(info: &IpvsInfo, table: &[IpvsTableEntry], options: &IpvsListOptions) -> String {
    let mut out = String::new();
    // `%d` of the unsigned size.
    let _ = writeln!(
        out,
        "IP Virtual Server version {} (size={})",
        IpvsVersion(info.version),
        info.connection_table_size as i32
    );
    let columns = Columns::from(options);
    push_title(&mut out, columns);
    let entries: Vec<&IpvsTableEntry> = if options.nosort {
        table.iter().collect()
    } else {
        sorted_entries(table)
    };
    for entry in entries {
        push_service_entry(&mut out, entry, columns, options);
    }
    out
}

/// The text of `ipvsadm -L -n -t addr:port` (or `-u`, `--sctp-service`,
/// `-f`) for one service: the title lines and the service, without the
/// version line.
pub fn format_list_service(entry: &IpvsTableEntry, options: &IpvsListOptions) -> String {
    let mut out = String::new();
    let columns = Columns::from(options);
    push_title(&mut out, columns);
    push_service_entry(&mut out, entry, columns, options);
    out
}

/// `print_title`.
fn push_title(out: &mut String, columns: Columns) {
    const PROT: &str = "Prot LocalAddress:Port";
    const REMOTE: &str = "  -> RemoteAddress:Port";
    let _ = match columns {
        Columns::Stats => writeln!(
            out,
            "{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{REMOTE}",
            "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        ),
        Columns::Rate => writeln!(
            out,
            "{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{REMOTE}",
            "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        ),
        Columns::Thresholds => writeln!(
            out,
            "{PROT:<33} {:<10} {:<10} {:<10} {:<10}\n{REMOTE}",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
        Columns::PersistentConn => writeln!(
            out,
            "{PROT:<33} {:<9} {:<11} {:<10} {:<10}\n{REMOTE}",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        ),
        Columns::TunnelInfo => writeln!(
            out,
            "Prot LocalAddress:Port Scheduler Flags\n{REMOTE}           \
             Forward TunnelInfo    Weight ActiveConn InActConn"
        ),
        Columns::Default => writeln!(
            out,
            "Prot LocalAddress:Port Scheduler Flags\n{REMOTE}           \
             Forward Weight ActiveConn InActConn"
        ),
    };
}

/// `print_service_entry` outside `FMT_RULE`.
fn push_service_entry(
    out: &mut String,
    entry: &IpvsTableEntry,
    columns: Columns,
    options: &IpvsListOptions,
) {
    let service = &entry.service;
    let name = list_service_name(&service.key);
    let stats = service.stats.as_deref().copied().unwrap_or_default();
    match columns {
        Columns::Stats => {
            let _ = write!(out, "{name:<33}");
            push_counters(out, &stats, options.exact);
        }
        Columns::Rate => {
            let _ = write!(out, "{name:<33}");
            push_rates(out, &stats, options.exact);
        }
        _ => push_service_summary(out, &name, service),
    }
    out.push('\n');

    let destinations: Vec<&IpvsDestination> = if options.nosort {
        entry.destinations.iter().collect()
    } else {
        sorted_destinations(&entry.destinations)
    };
    for destination in destinations {
        push_destination(out, destination, columns, options.exact);
    }
}

/// The service line of the default, thresholds, persistent-conn and
/// tun-info views: name, scheduler, `(flags)`, persistence, `ops`.
fn push_service_summary(out: &mut String, name: &str, service: &IpvsService) {
    let _ = write!(out, "{name} {}", service.scheduler);
    if has_scheduler_flags(service) {
        let _ = write!(out, " ({})", scheduler_flags(service));
    }
    if service.is_persistent() {
        let _ = write!(out, " persistent {}", service.timeout);
        if let Some(mask) = persistence_mask(service) {
            let _ = write!(out, " mask {mask}");
        }
        // Only shown for persistent services here, unlike in `-S`.
        if let Some(engine) = persistence_engine(service) {
            let _ = write!(out, " pe {engine}");
        }
    }
    if service.flags.contains(IpvsServiceFlags::ONE_PACKET) {
        out.push_str(" ops");
    }
}

fn push_counters(out: &mut String, stats: &IpvsStats, exact: bool) {
    for value in [
        stats.connections,
        stats.in_packets,
        stats.out_packets,
        stats.in_bytes,
        stats.out_bytes,
    ] {
        push_large_number(out, value, exact);
    }
}

fn push_rates(out: &mut String, stats: &IpvsStats, exact: bool) {
    for value in [
        stats.connection_rate,
        stats.in_packet_rate,
        stats.out_packet_rate,
        stats.in_byte_rate,
        stats.out_byte_rate,
    ] {
        push_large_number(out, value, exact);
    }
}

/// A real server's counters as ipvsadm 1.31 holds them: libipvs parses a
/// real server's `STATS64` nest with its 32-bit reader (`ipvs_parse_stats`),
/// which keeps the low 32 bits (on little-endian hosts) of every counter
/// but the byte counts.
fn destination_stats(destination: &IpvsDestination) -> IpvsStats {
    let stats = destination.stats.as_deref().copied().unwrap_or_default();
    let low = |value: u64| u64::from(value as u32);
    IpvsStats {
        connections: low(stats.connections),
        in_packets: low(stats.in_packets),
        out_packets: low(stats.out_packets),
        in_bytes: stats.in_bytes,
        out_bytes: stats.out_bytes,
        connection_rate: low(stats.connection_rate),
        in_packet_rate: low(stats.in_packet_rate),
        out_packet_rate: low(stats.out_packet_rate),
        in_byte_rate: low(stats.in_byte_rate),
        out_byte_rate: low(stats.out_byte_rate),
    }
}

/// One real server line of `print_service_entry`. Addresses that are not
/// IPv6 are cut to 28 bytes, as in ipvsadm (only host names were longer).
fn push_destination(
    out: &mut String,
    destination: &IpvsDestination,
    columns: Columns,
    exact: bool,
) {
    let mut name = address_port(&destination.key.address, destination.key.port);
    if !destination.key.address.is_ipv6() {
        name.truncate(28);
    }
    // The kernel's weight is an `int`, printed with `%d` (`%u` below).
    let weight = destination.weight as i32;
    let active = destination.active_connections;
    let inactive = destination.inactive_connections;
    let forward = forwarding_name(destination.forwarding);
    let _ = match columns {
        Columns::Stats => {
            let _ = write!(out, "  -> {name:<28}");
            push_counters(out, &destination_stats(destination), exact);
            writeln!(out)
        }
        Columns::Rate => {
            let stats = destination_stats(destination);
            // The first three rates are plain `%8llu`, never scaled.
            let _ = write!(
                out,
                "  -> {name:<28} {:>8} {:>8} {:>8}",
                stats.connection_rate, stats.in_packet_rate, stats.out_packet_rate
            );
            push_large_number(out, stats.in_byte_rate, exact);
            push_large_number(out, stats.out_byte_rate, exact);
            writeln!(out)
        }
        Columns::Thresholds => writeln!(
            out,
            "  -> {name:<28} {:<10} {:<10} {active:<10} {inactive:<10}",
            destination.upper_threshold, destination.lower_threshold
        ),
        Columns::PersistentConn => writeln!(
            out,
            "  -> {name:<28} {:<9} {:<11} {active:<10} {inactive:<10}",
            destination.weight, destination.persistent_connections
        ),
        Columns::TunnelInfo => writeln!(
            out,
            "  -> {name:<28} {forward:<7} {:<13} {weight:<6} {active:<10} {inactive:<10}",
            tunnel_info(destination).unwrap_or_else(|| "n/a".to_string())
        ),
        Columns::Default => writeln!(
            out,
            "  -> {name:<28} {forward:<7} {weight:<6} {active:<10} {inactive:<10}"
        ),
    };
}
