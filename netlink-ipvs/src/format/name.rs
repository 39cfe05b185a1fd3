// SPDX-License-Identifier: MIT

//! The names ipvsadm prints for addresses, protocols, forwarding methods,
//! tunnels and scheduler flags (ipvsadm.c: `addrport_to_anyname` with
//! `FMT_NUMERIC`, `protocol_name`, `option_from_protocol`, `fwd_name`,
//! `fwd_switch`, `fwd_tun_info`, `print_sched_flags`).

use std::fmt::Write;
use std::net::{IpAddr, Ipv6Addr};

use crate::address::IpvsAddressFamily;
use crate::dest::{IpvsDestination, IpvsForwardingMethod, IpvsTunnelType};
use crate::service::{IpvsProtocol, IpvsService, IpvsServiceFlags, IpvsServiceKey};

/// What glibc's `printf("%s", NULL)` prints: ipvsadm passes NULL for a
/// forwarding method it has no name for.
pub(crate) const NULL_STRING: &str = "(null)";

/// `IP_VS_SVC_F_SCHED1 | SCHED2 | SCHED3`.
const SCHED_FLAGS: u32 =
    IpvsServiceFlags::SCHED1 | IpvsServiceFlags::SCHED2 | IpvsServiceFlags::SCHED3;

/// `addrport_to_anyname(af, addr, port, proto, FMT_NUMERIC)`:
/// `10.0.0.1:80`, `[2001:db8::1]:80`.
pub(crate) fn address_port(address: &IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{}]:{port}", inet_ntop6(v6)),
    }
}

/// glibc's `inet_ntop(AF_INET6, ...)`. Rust's `Display` agrees with it but
/// for IPv4-compatible addresses (`::a.b.c.d`), which glibc prints dotted.
pub(crate) fn inet_ntop6(address: &Ipv6Addr) -> String {
    let words = address.segments();
    // The first longest run of zero words, if at least two long.
    let (mut best_base, mut best_len) = (None, 0);
    let mut i = 0;
    while i < 8 {
        if words[i] == 0 {
            let start = i;
            while i < 8 && words[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                best_base = Some(start);
                best_len = i - start;
            }
        } else {
            i += 1;
        }
    }
    if best_len < 2 {
        best_base = None;
    }
    let mut text = String::with_capacity(39);
    let mut i = 0;
    while i < 8 {
        if let Some(base) = best_base {
            if i >= base && i < base + best_len {
                if i == base {
                    text.push(':');
                }
                i += 1;
                continue;
            }
        }
        if i != 0 {
            text.push(':');
        }
        if i == 6
            && best_base == Some(0)
            && (best_len == 6 || (best_len == 5 && words[5] == 0xffff))
        {
            let o = address.octets();
            let _ = write!(text, "{}.{}.{}.{}", o[12], o[13], o[14], o[15]);
            return text;
        }
        let _ = write!(text, "{:x}", words[i]);
        i += 1;
    }
    if best_base.is_some_and(|base| base + best_len == 8) {
        text.push(':');
    }
    text
}

/// `protocol_name`: `TCP`, `UDP`, `SCTP`, else `?`.
pub(crate) fn protocol_name(protocol: IpvsProtocol) -> &'static str {
    match protocol {
        IpvsProtocol::Tcp => "TCP",
        IpvsProtocol::Udp => "UDP",
        IpvsProtocol::Sctp => "SCTP",
        IpvsProtocol::Other(_) => "?",
    }
}

/// `option_from_protocol`, with print_service_entry's fallback.
pub(crate) fn protocol_option(protocol: IpvsProtocol) -> &'static str {
    match protocol {
        IpvsProtocol::Tcp => "-t",
        IpvsProtocol::Udp => "-u",
        IpvsProtocol::Sctp => "--sctp-service",
        IpvsProtocol::Other(_) => "--xxx-service",
    }
}

/// `fwd_name`: the `Forward` column (`(null)` for bypass and others).
pub(crate) fn forwarding_name(method: IpvsForwardingMethod) -> &'static str {
    match method {
        IpvsForwardingMethod::Masquerade => "Masq",
        IpvsForwardingMethod::Local => "Local",
        IpvsForwardingMethod::Tunnel => "Tunnel",
        IpvsForwardingMethod::DirectRoute => "Route",
        _ => NULL_STRING,
    }
}

/// `fwd_switch`: the `-a` option. A local-node real server is saved as
/// `-g` (ipvsadm has no option for it; the kernel makes any local
/// address `Local` again).
pub(crate) fn forwarding_switch(method: IpvsForwardingMethod) -> &'static str {
    match method {
        IpvsForwardingMethod::Masquerade => "-m",
        IpvsForwardingMethod::Tunnel => "-i",
        IpvsForwardingMethod::Local | IpvsForwardingMethod::DirectRoute => "-g",
        _ => NULL_STRING,
    }
}

/// `tunnames[tun_type]`; `None` where ipvsadm would index past the table.
pub(crate) fn tunnel_name(kind: IpvsTunnelType) -> Option<&'static str> {
    match kind {
        IpvsTunnelType::Ipip => Some("ipip"),
        IpvsTunnelType::Gue => Some("gue"),
        IpvsTunnelType::Gre => Some("gre"),
        _ => None,
    }
}

/// `tunflags[tun_flags]` (`-c`, `+c`, `r+c`), for `--tun-info`. ipvsadm
/// indexes its table with the raw value; the kernel only accepts 0..=2,
/// anything else is shown as `?` here.
fn tunnel_flags_short(flags: u16) -> &'static str {
    match flags {
        0 => "-c",
        1 => "+c",
        2 => "r+c",
        _ => "?",
    }
}

/// `tun_flags_opts[tun_flags]`, for `-S`; same table bounds as
/// [`tunnel_flags_short`].
pub(crate) fn tunnel_flags_option(flags: u16) -> &'static str {
    match flags {
        0 => "--tun-nocsum",
        1 => "--tun-csum",
        2 => "--tun-remcsum",
        _ => "?",
    }
}

/// `fwd_tun_info`: `ipip`, `gue:6080:-c`, `gre:+c`, or `None` (printed as
/// `n/a`) for other methods and unknown tunnel types. ipvsadm formats it
/// into 16 bytes, so at most 15 characters are kept.
pub(crate) fn tunnel_info(destination: &IpvsDestination) -> Option<String> {
    if destination.forwarding != IpvsForwardingMethod::Tunnel {
        return None;
    }
    let flags = destination.tunnel_flags.0;
    let mut info = match destination.tunnel_type {
        IpvsTunnelType::Ipip => "ipip".to_string(),
        IpvsTunnelType::Gue => format!(
            "gue:{}:{}",
            destination.tunnel_port,
            tunnel_flags_short(flags)
        ),
        IpvsTunnelType::Gre => format!("gre:{}", tunnel_flags_short(flags)),
        _ => return None,
    };
    info.truncate(15);
    Some(info)
}

/// Whether any scheduler flag bit is set (ipvsadm then prints the flags).
pub(crate) fn has_scheduler_flags(service: &IpvsService) -> bool {
    service.flags.0 & SCHED_FLAGS != 0
}

/// `print_sched_flags`: `sh-fallback,sh-port`, `mh-port`, `flag-1,flag-3`
/// (names depend on the scheduler; empty when none of its flags is set).
pub(crate) fn scheduler_flags(service: &IpvsService) -> String {
    let flags = service.flags;
    let names: [(u32, &str); 3] = match service.scheduler.as_str() {
        "sh" => [
            (IpvsServiceFlags::SCHED1, "sh-fallback"),
            (IpvsServiceFlags::SCHED2, "sh-port"),
            (0, ""),
        ],
        "mh" => [
            (IpvsServiceFlags::SCHED1, "mh-fallback"),
            (IpvsServiceFlags::SCHED2, "mh-port"),
            (0, ""),
        ],
        _ => [
            (IpvsServiceFlags::SCHED1, "flag-1"),
            (IpvsServiceFlags::SCHED2, "flag-2"),
            (IpvsServiceFlags::SCHED3, "flag-3"),
        ],
    };
    names
        .iter()
        .filter(|(bit, _)| *bit != 0 && flags.0 & bit != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

/// The persistence engine, if named (`pe_name[0] != 0` in ipvsadm).
pub(crate) fn persistence_engine(service: &IpvsService) -> Option<&str> {
    service
        .persistence_engine
        .as_deref()
        .filter(|name| !name.is_empty())
}

/// The persistence mask as ipvsadm prints it after `mask` / `-M`, or
/// `None` for the family's default (`/32`, `/128`) and unknown families.
pub(crate) fn persistence_mask(service: &IpvsService) -> Option<String> {
    let netmask = service.netmask;
    match service.key.family() {
        IpvsAddressFamily::Inet if netmask.0 != u32::MAX => Some(netmask.as_ipv4().to_string()),
        // `%i` of an unsigned value.
        IpvsAddressFamily::Inet6 if netmask.0 != 128 => Some((netmask.0 as i32).to_string()),
        _ => None,
    }
}

/// The service as named in list modes: `TCP  10.0.0.1:80` (protocol
/// left-aligned in 4), `FWM  42`, `FWM  42 IPv6`. Like ipvsadm, a name
/// that is not IPv6 is cut to 33 bytes (only host names were that long).
///
/// ipvsadm 1.31 prints the mark with `%d`: marks from 2^31 on come out
/// negative (`FWM  -1294967296` for 3000000000), here too.
pub(crate) fn list_service_name(key: &IpvsServiceKey) -> String {
    match key {
        IpvsServiceKey::Fwmark {
            family: IpvsAddressFamily::Inet6,
            mark,
        } => format!("FWM  {} IPv6", *mark as i32),
        IpvsServiceKey::Fwmark { mark, .. } => format!("FWM  {}", *mark as i32),
        IpvsServiceKey::Inet {
            protocol,
            address,
            port,
        } => {
            let mut name = format!(
                "{:<4} {}",
                protocol_name(*protocol),
                address_port(address, *port)
            );
            if !address.is_ipv6() {
                name.truncate(33);
            }
            name
        }
    }
}

/// The service as named in `-S` rules: `-t 10.0.0.1:80`, `-f 42`,
/// `-f 42 -6` (the mark signed, as in [`list_service_name`]).
pub(crate) fn rule_service_name(key: &IpvsServiceKey) -> String {
    match key {
        IpvsServiceKey::Fwmark {
            family: IpvsAddressFamily::Inet6,
            mark,
        } => format!("-f {} -6", *mark as i32),
        IpvsServiceKey::Fwmark { mark, .. } => format!("-f {}", *mark as i32),
        IpvsServiceKey::Inet {
            protocol,
            address,
            port,
        } => format!(
            "{} {}",
            protocol_option(*protocol),
            address_port(address, *port)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ntop(text: &str) -> String {
        inet_ntop6(&text.parse().unwrap())
    }

    /// Expected strings: glibc 2.36 `inet_ntop` (resolv/inet_ntop.c rules).
    #[test]
    fn ipv6_text_follows_glibc() {
        assert_eq!(ntop("::"), "::");
        assert_eq!(ntop("::1"), "::1");
        assert_eq!(ntop("::5"), "::5");
        assert_eq!(ntop("2001:db8::1"), "2001:db8::1");
        assert_eq!(ntop("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
        assert_eq!(ntop("2001:db8:0:1:0:0:0:1"), "2001:db8:0:1::1");
        assert_eq!(ntop("fe80::"), "fe80::");
        assert_eq!(ntop("1:0:2:3:4:5:6:7"), "1:0:2:3:4:5:6:7");
        assert_eq!(ntop("::ffff:10.1.2.3"), "::ffff:10.1.2.3");
        // IPv4-compatible: glibc prints it dotted, Rust would say ::a01:203.
        assert_eq!(ntop("::10.1.2.3"), "::10.1.2.3");
        assert_eq!(ntop("ff02::1"), "ff02::1");
    }

    #[test]
    fn service_names() {
        let tcp = IpvsServiceKey::tcp("10.0.0.1".parse().unwrap(), 80);
        assert_eq!(list_service_name(&tcp), "TCP  10.0.0.1:80");
        assert_eq!(rule_service_name(&tcp), "-t 10.0.0.1:80");
        let sctp = IpvsServiceKey::sctp("2001:db8::1".parse().unwrap(), 3868);
        assert_eq!(list_service_name(&sctp), "SCTP [2001:db8::1]:3868");
        assert_eq!(
            rule_service_name(&sctp),
            "--sctp-service [2001:db8::1]:3868"
        );
        let other = IpvsServiceKey::Inet {
            protocol: IpvsProtocol::Other(47),
            address: "10.0.0.1".parse().unwrap(),
            port: 0,
        };
        assert_eq!(list_service_name(&other), "?    10.0.0.1:0");
        assert_eq!(rule_service_name(&other), "--xxx-service 10.0.0.1:0");
    }
}
