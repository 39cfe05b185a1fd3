// SPDX-License-Identifier: MIT

//! The formatter against text captured from the real ipvsadm 1.31
//! (Debian 12, kernel 6.1.0-56-amd64 under QEMU), byte for byte.
//!
//! Each scenario is the list of ipvsadm commands that built the kernel
//! table (`VARIED`, `WRAP` below, run in this order). The test replays
//! them into our model with ipvsadm's defaults, puts services and real
//! servers in the order the kernel dumped them (read from the captured
//! `ipvsadm -Ln --nosort`), takes the counters from the captured
//! `--exact` listings, then compares every output mode with ipvsadm's.
//!
//! Captured in the guest with, after the commands (and, for `varied`,
//! UDP and TCP traffic to 10.0.0.9 and 10.0.0.10 on a dummy interface):
//! `ipvsadm -Ln --nosort`, `-Ln --stats --exact --nosort`,
//! `-Ln --rate --exact --nosort`, `-Ln --rate`, `-Ln --stats`, `-Ln`,
//! `-Sn`, `-Ln --thresholds`, `-Ln --persistent-conn`, `-Ln --tun-info`,
//! `-Ln --exact --stats`, `-Ln --tun-info --nosort`,
//! `-Ln --thresholds --nosort`, `-Ln --persistent-conn --nosort`, and
//! `-Ln --nosort` again (the same as the first: nothing moved meanwhile).
//! They are in `captured/`, named `<scenario>.<mode>.txt`. The estimator
//! moved the rates between the first `--rate --exact --nosort` and
//! `--rate`; `<scenario>.nosort.rate-exact.txt` is therefore the same
//! listing taken again right after `--rate` (identical to it).

mod replay;

use replay::{replay, Captured};

use super::{format_list, format_save, sort_table, IpvsListOptions};
use crate::info::IpvsInfo;

const INFO: IpvsInfo = IpvsInfo {
    version: 0x010201,
    connection_table_size: 4096,
};

/// The varied table: every protocol, both families, fwmarks, every
/// forwarding method and tunnel type, persistence with and without mask,
/// persistence engine, one-packet scheduling, scheduler flags, weight 0
/// and 65535, thresholds, a mixed-family tunnel each way, and addresses
/// and ports that sort differently as text and as numbers.
const VARIED: &[&str] = &[
    "-A -t 10.0.0.10:80 -s rr",
    "-A -t 10.0.0.9:8080 -s wlc",
    "-A -t 10.0.0.9:80 -s wrr",
    "-a -t 10.0.0.10:80 -r 10.1.0.10:8080 -m -w 1",
    "-a -t 10.0.0.10:80 -r 10.1.0.9:8080 -m -w 0",
    "-a -t 10.0.0.10:80 -r 10.1.0.9:80 -m -w 65535 -x 100 -y 10",
    "-a -t 10.0.0.10:80 -r 127.0.0.1:80 -m -w 2",
    "-a -t 10.0.0.9:8080 -r 10.1.0.90:8080 -m -w 1",
    "-a -t 10.0.0.9:80 -r 10.1.0.20 -g -w 3",
    "-a -t 10.0.0.9:80 -r 10.1.0.21 -i -w 2",
    "-a -t 10.0.0.9:80 -r 10.1.0.22 -i -w 1 --tun-type gue --tun-port 6080",
    "-a -t 10.0.0.9:80 -r 10.1.0.23 -i -w 1 --tun-type gue --tun-port 6081 --tun-csum",
    "-a -t 10.0.0.9:80 -r 10.1.0.25 -i -w 1 --tun-type gue --tun-port 6082 --tun-remcsum",
    "-a -t 10.0.0.9:80 -r 10.1.0.24 -i -w 1 --tun-type gre --tun-csum",
    "-a -t 10.0.0.9:80 -r 10.1.0.26 -i -w 1 --tun-type gre",
    "-a -t 10.0.0.9:80 -r [2001:db8:1::99]:80 -i -w 1",
    "-A -u 10.0.0.9:53 -s rr -o",
    "-a -u 10.0.0.9:53 -r 10.1.0.53:53 -m -w 1",
    "-a -u 10.0.0.9:53 -r 10.1.0.54:53 -m -w 1",
    "-A -u 10.0.0.10:53 -s wrr",
    "-a -u 10.0.0.10:53 -r 10.1.0.55:5353 -m -w 4",
    "-A --sctp-service 10.0.0.11:3868 -s lc",
    "-a --sctp-service 10.0.0.11:3868 -r 10.1.0.11:3868 -m -w 2",
    "-A -t 10.0.0.12:443 -s sh -b sh-fallback,sh-port",
    "-a -t 10.0.0.12:443 -r 10.1.0.12:443 -m -w 1",
    "-A -t 10.0.0.13:443 -s mh -b mh-port",
    "-A -t 10.0.0.17:443 -s mh -b mh-fallback,mh-port",
    "-A -t 10.0.0.18:443 -s sh -b sh-port",
    "-A -t 10.0.0.14:443 -s wlc -p 600 -M 255.255.255.0",
    "-a -t 10.0.0.14:443 -r 10.1.0.14:443 -m -w 1",
    "-A -t 10.0.0.15:0 -s rr -p",
    "-A -t 10.0.0.19:80 -s rr -b flag-1,flag-3",
    "-A -u 10.0.0.16:5060 -s rr -p 60 --pe sip",
    "-A -u 10.0.0.20:5060 -s rr -p 60 -M 255.255.0.0 --pe sip -o",
    "-A -t [2001:db8::10]:80 -s rr",
    "-A -t [2001:db8::9]:80 -s rr -p 120 -M 64",
    "-A -t [2001:db8::9]:443 -s rr -p 120",
    "-a -t [2001:db8::10]:80 -r [2001:db8:1::10]:8080 -m -w 1",
    "-a -t [2001:db8::10]:80 -r [2001:db8:1::9]:8080 -m -w 1",
    "-a -t [2001:db8::10]:80 -r [2001:db8:1::9]:80 -m -w 1",
    "-a -t [2001:db8::10]:80 -r 10.1.0.30 -i -w 1",
    "-a -t [2001:db8::10]:80 -r 10.1.0.31 -i -w 1 --tun-type gue --tun-port 6080",
    "-A -u [2001:db8::53]:53 -s rr",
    "-A --sctp-service [2001:db8::11]:3868 -s rr",
    "-A -f 42 -s rr",
    "-a -f 42 -r 10.1.0.42:80 -m -w 1",
    "-a -f 42 -r 10.1.0.43 -g -w 1",
    "-A -f 7 -s wlc -p 30",
    "-A -f 43 -6 -s wrr -p 60",
    "-A -f 44 -6 -s rr -p 60 -M 96",
    "-a -f 43 -6 -r [2001:db8:1::43]:80 -m -w 1",
    "-A -f 42 -6 -s rr",
];

/// Addresses and fwmarks more than 2^31 apart, where ipvsadm's
/// subtracting comparators wrap and stop being transitive; an
/// IPv4-compatible IPv6 real server (glibc prints it dotted). The kernel
/// refuses IPv4-mapped and link-local real servers.
const WRAP: &[&str] = &[
    "-A -t 10.0.0.1:80 -s rr",
    "-A -t 100.0.0.1:80 -s rr",
    "-A -t 172.16.0.1:80 -s rr",
    "-A -t 192.168.0.1:80 -s rr",
    "-A -t 200.0.0.1:80 -s rr",
    "-A -t 10.0.0.2:80 -s rr",
    "-A -t 127.0.0.5:80 -s rr",
    "-A -t 128.0.0.5:80 -s rr",
    "-A -t 203.0.113.7:80 -s rr",
    "-A -t 1.2.3.4:80 -s rr",
    "-A -t 250.1.1.1:80 -s rr",
    "-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1",
    "-a -t 10.0.0.1:80 -r 100.1.0.1:80 -m -w 1",
    "-a -t 10.0.0.1:80 -r 172.16.1.1:80 -m -w 1",
    "-a -t 10.0.0.1:80 -r 192.168.1.1:80 -m -w 1",
    "-a -t 10.0.0.1:80 -r 200.1.0.1:80 -m -w 1",
    "-a -t 10.0.0.1:80 -r 1.1.1.1:80 -m -w 1",
    "-a -t 10.0.0.1:80 -r 129.0.0.1:80 -m -w 1",
    "-a -t 10.0.0.1:80 -r 250.0.0.1:80 -m -w 1",
    "-a -t 10.0.0.1:80 -r [2001:db8::1]:80 -i -w 1",
    "-a -t 10.0.0.1:80 -r [::10.1.2.3]:80 -i -w 1",
    "-A -t [2001:db8::1]:80 -s rr",
    "-A -t [fe80::1]:80 -s rr",
    "-A -t [::1]:80 -s rr",
    "-A -t [ff02::1]:80 -s rr",
    "-a -t [2001:db8::1]:80 -r [2001:db8::5]:80 -m -w 1",
    "-a -t [2001:db8::1]:80 -r 10.2.0.1 -i -w 1",
    "-a -t [2001:db8::1]:80 -r 200.2.0.1 -i -w 1",
    "-a -t [2001:db8::1]:80 -r [::5]:80 -m -w 1",
    "-A -f 3000000000 -s rr",
    "-A -f 1 -s rr",
    "-A -f 4294967295 -s rr",
    "-A -f 2147483648 -6 -s rr",
];

macro_rules! captured {
    ($scenario:literal) => {
        Captured {
            nosort: include_str!(concat!("captured/", $scenario, ".nosort.txt")),
            nosort_stats_exact: include_str!(concat!(
                "captured/",
                $scenario,
                ".nosort.stats-exact.txt"
            )),
            nosort_rate_exact: include_str!(concat!(
                "captured/",
                $scenario,
                ".nosort.rate-exact.txt"
            )),
            nosort_persistent_conn: include_str!(concat!(
                "captured/",
                $scenario,
                ".nosort.persistent-conn.txt"
            )),
        }
    };
}

/// Compares line by line, so that a failure names the first differing line.
#[track_caller]
fn assert_text(mode: &str, ours: &str, ipvsadm: &str) {
    if ours == ipvsadm {
        return;
    }
    let ours_lines: Vec<&str> = ours.split_inclusive('\n').collect();
    let ipvsadm_lines: Vec<&str> = ipvsadm.split_inclusive('\n').collect();
    for (i, (a, b)) in ours_lines.iter().zip(&ipvsadm_lines).enumerate() {
        assert_eq!(
            a,
            b,
            "{mode}: line {} differs\nours:\n{ours}\nipvsadm:\n{ipvsadm}",
            i + 1
        );
    }
    panic!(
        "{mode}: {} lines here, {} from ipvsadm\nours:\n{ours}\nipvsadm:\n{ipvsadm}",
        ours_lines.len(),
        ipvsadm_lines.len()
    );
}

fn options(set: impl FnOnce(&mut IpvsListOptions)) -> IpvsListOptions {
    let mut options = IpvsListOptions::default();
    set(&mut options);
    options
}

macro_rules! scenario_tests {
    ($module:ident, $scenario:literal, $commands:expr) => {
        mod $module {
            use super::*;

            fn table() -> Vec<crate::client::IpvsTableEntry> {
                replay($commands, &captured!($scenario))
            }

            #[test]
            fn list() {
                let text = format_list(&INFO, &table(), &IpvsListOptions::default());
                assert_text(
                    "-Ln",
                    &text,
                    include_str!(concat!("captured/", $scenario, ".list.txt")),
                );
            }

            #[test]
            fn list_nosort_keeps_kernel_order() {
                let text = format_list(&INFO, &table(), &options(|o| o.nosort = true));
                assert_text(
                    "-Ln --nosort",
                    &text,
                    include_str!(concat!("captured/", $scenario, ".nosort.txt")),
                );
            }

            #[test]
            fn stats() {
                let text = format_list(&INFO, &table(), &options(|o| o.stats = true));
                assert_text(
                    "-Ln --stats",
                    &text,
                    include_str!(concat!("captured/", $scenario, ".stats.txt")),
                );
                let exact = format_list(
                    &INFO,
                    &table(),
                    &options(|o| {
                        o.stats = true;
                        o.exact = true;
                    }),
                );
                assert_text(
                    "-Ln --stats --exact",
                    &exact,
                    include_str!(concat!("captured/", $scenario, ".stats-exact.txt")),
                );
            }

            #[test]
            fn rate() {
                let text = format_list(&INFO, &table(), &options(|o| o.rate = true));
                assert_text(
                    "-Ln --rate",
                    &text,
                    include_str!(concat!("captured/", $scenario, ".rate.txt")),
                );
            }

            #[test]
            fn thresholds() {
                let text = format_list(&INFO, &table(), &options(|o| o.thresholds = true));
                assert_text(
                    "-Ln --thresholds",
                    &text,
                    include_str!(concat!("captured/", $scenario, ".thresholds.txt")),
                );
                let nosort = format_list(
                    &INFO,
                    &table(),
                    &options(|o| {
                        o.thresholds = true;
                        o.nosort = true;
                    }),
                );
                assert_text(
                    "-Ln --thresholds --nosort",
                    &nosort,
                    include_str!(concat!("captured/", $scenario, ".nosort.thresholds.txt")),
                );
            }

            #[test]
            fn persistent_conn() {
                let text = format_list(&INFO, &table(), &options(|o| o.persistent_conn = true));
                assert_text(
                    "-Ln --persistent-conn",
                    &text,
                    include_str!(concat!("captured/", $scenario, ".persistent-conn.txt")),
                );
            }

            #[test]
            fn tun_info() {
                let text = format_list(&INFO, &table(), &options(|o| o.tun_info = true));
                assert_text(
                    "-Ln --tun-info",
                    &text,
                    include_str!(concat!("captured/", $scenario, ".tun-info.txt")),
                );
                let nosort = format_list(
                    &INFO,
                    &table(),
                    &options(|o| {
                        o.tun_info = true;
                        o.nosort = true;
                    }),
                );
                assert_text(
                    "-Ln --tun-info --nosort",
                    &nosort,
                    include_str!(concat!("captured/", $scenario, ".nosort.tun-info.txt")),
                );
            }

            #[test]
            fn save() {
                assert_text(
                    "-Sn",
                    &format_save(&table()),
                    include_str!(concat!("captured/", $scenario, ".save.txt")),
                );
            }

            #[test]
            fn sort_table_gives_ipvsadm_order() {
                let mut table = table();
                sort_table(&mut table);
                let text = format_list(&INFO, &table, &options(|o| o.nosort = true));
                assert_text(
                    "sort_table",
                    &text,
                    include_str!(concat!("captured/", $scenario, ".list.txt")),
                );
            }
        }
    };
}

scenario_tests!(varied, "varied", VARIED);
scenario_tests!(wrap, "wrap", WRAP);

mod handmade;
