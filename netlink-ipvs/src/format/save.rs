// SPDX-License-Identifier: MIT

//! `ipvsadm -S -n`: the table as the rules `ipvsadm -R` reads back
//! (ipvsadm.c's `print_service_entry` and `print_tunnel_rule` with
//! `FMT_RULE`).

use std::fmt::Write;

use super::name::{
    address_port, forwarding_switch, has_scheduler_flags, persistence_engine, persistence_mask,
    rule_service_name, scheduler_flags, tunnel_flags_option, tunnel_name,
};
use super::sort::{sorted_destinations, sorted_entries};
use crate::client::IpvsTableEntry;
use crate::dest::{IpvsDestination, IpvsForwardingMethod, IpvsTunnelType};
use crate::service::IpvsServiceFlags;

/// The text of `ipvsadm -S -n` for `table`, sorted as ipvsadm sorts:
/// one `-A` line per service, then one `-a` line per real server.
///
/// Like ipvsadm 1.31, it does not save thresholds (`-x`, `-y`), and saves
/// a local-node real server as `-g`.
///
/// ```
/// use netlink_ipvs::format::format_save;
/// use netlink_ipvs::{IpvsDestination, IpvsForwardingMethod, IpvsService, IpvsServiceKey};
/// use netlink_ipvs::IpvsTableEntry;
///
/// let key = IpvsServiceKey::tcp("10.0.0.1".parse().unwrap(), 80);
/// let table = [IpvsTableEntry {
///     service: IpvsService::new(key, "rr"),
///     destinations: vec![IpvsDestination::new(
///         "10.1.0.1".parse().unwrap(), 8080, IpvsForwardingMethod::Masquerade, 1,
///     )],
/// }];
/// assert_eq!(
///     format_save(&table),
///     "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.0.1:8080 -m -w 1\n"
/// );
/// ```
pub fn format_save(table: &[IpvsTableEntry]) -> String {
    let mut out = String::new();
    for entry in sorted_entries(table) {
        let service = &entry.service;
        let name = rule_service_name(&service.key);
        let _ = write!(out, "-A {name} -s {}", service.scheduler);
        if service.is_persistent() {
            let _ = write!(out, " -p {}", service.timeout);
            if let Some(mask) = persistence_mask(service) {
                let _ = write!(out, " -M {mask}");
            }
        }
        if let Some(engine) = persistence_engine(service) {
            let _ = write!(out, " --pe {engine}");
        }
        if service.flags.contains(IpvsServiceFlags::ONE_PACKET) {
            out.push_str(" -o");
        }
        if has_scheduler_flags(service) {
            let _ = write!(out, " -b {}", scheduler_flags(service));
        }
        out.push('\n');
        for destination in sorted_destinations(&entry.destinations) {
            push_destination_rule(&mut out, &name, destination);
        }
    }
    out
}

/// One `-a` line; tunnels get their type, port and checksum options
/// (`print_tunnel_rule`).
fn push_destination_rule(out: &mut String, service: &str, destination: &IpvsDestination) {
    let _ = write!(
        out,
        "-a {service} -r {} {} -w {}",
        address_port(&destination.key.address, destination.key.port),
        forwarding_switch(destination.forwarding),
        // `%d` of the kernel's `int` weight.
        destination.weight as i32
    );
    if destination.forwarding == IpvsForwardingMethod::Tunnel {
        let flags = tunnel_flags_option(destination.tunnel_flags.0);
        match (
            destination.tunnel_type,
            tunnel_name(destination.tunnel_type),
        ) {
            (IpvsTunnelType::Gre, Some(kind)) => {
                let _ = write!(out, " --tun-type {kind} {flags}");
            }
            (IpvsTunnelType::Gue, Some(kind)) => {
                let _ = write!(
                    out,
                    " --tun-type {kind} --tun-port {} {flags}",
                    destination.tunnel_port
                );
            }
            (IpvsTunnelType::Ipip, Some(kind)) => {
                let _ = write!(out, " --tun-type {kind}");
            }
            // An unknown type: ipvsadm prints the plain rule.
            _ => {}
        }
    }
    out.push('\n');
}
