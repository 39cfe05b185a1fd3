// SPDX-License-Identifier: MIT

//! What a test kernel cannot easily be made to report (counters past 100
//! million or 2^32, forwarding methods it no longer sets, an empty table),
//! checked against the printf formats of ipvsadm 1.31's source
//! (`print_largenum`, `print_service_entry`, `fwd_name`, `fwd_switch`).

use super::{assert_text, options, INFO};
use crate::client::IpvsTableEntry;
use crate::dest::{IpvsDestination, IpvsForwardingMethod};
use crate::format::{format_list, format_list_service, format_save, IpvsListOptions};
use crate::service::{IpvsService, IpvsServiceKey};
use crate::stats::IpvsStats;

fn entry() -> IpvsTableEntry {
    let key = IpvsServiceKey::tcp("10.0.0.1".parse().unwrap(), 80);
    let mut service = IpvsService::new(key, "rr");
    service.stats = Some(Box::new(IpvsStats {
        connections: 123_456_789,
        in_packets: 5_000_000_000,
        out_packets: 250_000_000_000,
        in_bytes: 400_000_000_000_000,
        out_bytes: 99_999_999,
        connection_rate: 100_000_000,
        in_packet_rate: 7,
        out_packet_rate: 0,
        in_byte_rate: 1_000_000_000,
        out_byte_rate: 12,
    }));
    let mut local = IpvsDestination::new(
        "10.0.0.1".parse().unwrap(),
        80,
        IpvsForwardingMethod::Local,
        1,
    );
    // 2^32 + 5 connections: ipvsadm reads a real server's counters but
    // bytes through 32 bits.
    local.stats = Some(Box::new(IpvsStats {
        connections: (1 << 32) + 5,
        in_packets: 200_000_000,
        in_bytes: (1 << 32) + 5,
        connection_rate: (1 << 32) + 300_000_000,
        in_byte_rate: 300_000_000,
        ..IpvsStats::default()
    }));
    let bypass = IpvsDestination::new(
        "10.0.0.2".parse().unwrap(),
        80,
        IpvsForwardingMethod::Bypass,
        1,
    );
    IpvsTableEntry {
        service,
        destinations: vec![local, bypass],
    }
}

#[test]
fn empty_table_prints_the_titles() {
    assert_text(
        "-Ln",
        &format_list(&INFO, &[], &IpvsListOptions::default()),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
    );
    assert_eq!(format_save(&[]), "");
}

#[test]
fn large_counters_are_scaled() {
    let text = format_list(&INFO, &[entry()], &options(|o| o.stats = true));
    assert_text(
        "-Ln --stats",
        &text,
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n\
         \x20 -> RemoteAddress:Port\n\
         TCP  10.0.0.1:80                   123456K    5000M     250G     400T 99999999\n\
         \x20 -> 10.0.0.1:80                         5  200000K        0    4294M        0\n\
         \x20 -> 10.0.0.2:80                         0        0        0        0        0\n",
    );
}

#[test]
fn first_rates_of_a_real_server_are_not_scaled() {
    let text = format_list(&INFO, &[entry()], &options(|o| o.rate = true));
    assert_text(
        "-Ln --rate",
        &text,
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n\
         \x20 -> RemoteAddress:Port\n\
         TCP  10.0.0.1:80                   100000K        7        0    1000M       12\n\
         \x20 -> 10.0.0.1:80                  300000000        0        0  300000K        0\n\
         \x20 -> 10.0.0.2:80                         0        0        0        0        0\n",
    );
}

#[test]
fn unnamed_forwarding_methods_print_as_glibc_null() {
    let text = format_list_service(&entry(), &IpvsListOptions::default());
    assert_text(
        "-Ln -t 10.0.0.1:80",
        &text,
        "Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  10.0.0.1:80 rr\n\
         \x20 -> 10.0.0.1:80                  Local   1      0          0         \n\
         \x20 -> 10.0.0.2:80                  (null)  1      0          0         \n",
    );
    assert_text(
        "-Sn",
        &format_save(&[entry()]),
        "-A -t 10.0.0.1:80 -s rr\n\
         -a -t 10.0.0.1:80 -r 10.0.0.1:80 -g -w 1\n\
         -a -t 10.0.0.1:80 -r 10.0.0.2:80 (null) -w 1\n",
    );
}
