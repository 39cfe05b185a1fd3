//! `netlink_ipvs::format` against the real ipvsadm 1.31 on a real kernel:
//! the table is read back with our client, formatted, and compared byte
//! for byte with what ipvsadm prints for the same kernel table, in every
//! listing mode and in `-S`. Both directions: a table built by our client,
//! and tables built by ipvsadm commands.
//!
//! Run in the guest (`integration/scripts/guest-tests.sh`); anywhere else
//! every test fails at once. Each test starts and ends with `ipvsadm -C`.

use std::net::{IpAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use integration::{clear_table, connect, ipvsadm, require_guest};
use netlink_ipvs::format::{format_list, format_save, IpvsListOptions};
use netlink_ipvs::{
    IpvsAddressFamily, IpvsDestination, IpvsForwardingMethod, IpvsHandle, IpvsNetmask, IpvsService,
    IpvsServiceFlags, IpvsServiceKey, IpvsTunnelFlags, IpvsTunnelType,
};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

/// Fails with both texts and a line-by-line diff (`-` ipvsadm, `+` ours).
#[track_caller]
fn assert_same_text(what: &str, ours: &str, ipvsadm: &str) {
    if ours == ipvsadm {
        return;
    }
    let mut diff = line_diff(
        &ipvsadm.split_inclusive('\n').collect::<Vec<_>>(),
        &ours.split_inclusive('\n').collect::<Vec<_>>(),
    );
    if ours.lines().eq(ipvsadm.lines()) {
        diff.push_str("(the lines agree: the difference is in line endings)\n");
    }
    panic!("`ipvsadm {what}` and our text differ (- ipvsadm, + ours):\n{diff}");
}

/// A unified-style diff of two line lists through their longest common
/// subsequence: `  ` common, `- ` only in `a`, `+ ` only in `b`; lines
/// are quoted so that trailing spaces show.
fn line_diff(a: &[&str], b: &[&str]) -> String {
    // lcs[i][j]: the common subsequence length of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut diff = String::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            diff.push_str(&format!("  {:?}\n", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            diff.push_str(&format!("+ {:?}\n", b[j]));
            j += 1;
        } else {
            diff.push_str(&format!("- {:?}\n", a[i]));
            i += 1;
        }
    }
    diff
}

fn options(set: impl FnOnce(&mut IpvsListOptions)) -> IpvsListOptions {
    let mut options = IpvsListOptions::default();
    set(&mut options);
    options
}

/// Every listing mode and `-S`, ours against ipvsadm's, for the current
/// kernel table. Counters must not move meanwhile (no traffic in flight).
async fn assert_formats_like_ipvsadm(handle: &IpvsHandle) {
    let info = handle.info().await.expect("read IPVS info");
    let table = handle.table().await.expect("read the table");
    let modes: Vec<(&[&str], IpvsListOptions)> = vec![
        (&["-Ln"], IpvsListOptions::default()),
        (&["-Ln", "--nosort"], options(|o| o.nosort = true)),
        (&["-Ln", "--stats"], options(|o| o.stats = true)),
        (
            &["-Ln", "--stats", "--exact"],
            options(|o| {
                o.stats = true;
                o.exact = true;
            }),
        ),
        (&["-Ln", "--thresholds"], options(|o| o.thresholds = true)),
        (
            &["-Ln", "--persistent-conn"],
            options(|o| o.persistent_conn = true),
        ),
        (&["-Ln", "--tun-info"], options(|o| o.tun_info = true)),
        (
            &["-Ln", "--tun-info", "--nosort"],
            options(|o| {
                o.tun_info = true;
                o.nosort = true;
            }),
        ),
    ];
    for (args, options) in modes {
        let theirs = ipvsadm(args);
        let ours = format_list(&info, &table, &options);
        assert_same_text(&args.join(" "), &ours, &theirs);
    }
    assert_same_text("-Sn", &format_save(&table), &ipvsadm(&["-Sn"]));
    assert_rates_like_ipvsadm(handle).await;
}

/// `-Ln --rate`: the kernel's estimator moves the rates every 2 seconds,
/// so compare only a read of ipvsadm's that falls between two identical
/// reads of ours.
async fn assert_rates_like_ipvsadm(handle: &IpvsHandle) {
    let info = handle.info().await.expect("read IPVS info");
    let rate = options(|o| o.rate = true);
    for _ in 0..10 {
        let before = format_list(&info, &handle.table().await.unwrap(), &rate);
        let theirs = ipvsadm(&["-Ln", "--rate"]);
        let after = format_list(&info, &handle.table().await.unwrap(), &rate);
        if before == after {
            assert_same_text("-Ln --rate", &before, &theirs);
            return;
        }
    }
    panic!("the rates never held still for one ipvsadm read");
}

fn add_commands(commands: &[&str]) {
    for command in commands {
        let args: Vec<&str> = command.split_whitespace().collect();
        ipvsadm(&args);
    }
}

/// Best effort (the kernel also loads it on demand).
fn modprobe(module: &str) {
    let _ = Command::new("modprobe").arg(module).status();
}

/// The varied table, built through our client: every protocol, both
/// families, fwmarks, every forwarding method and tunnel type, both
/// mixed-family tunnels, persistence with and without mask, a
/// persistence engine, one-packet scheduling, scheduler flags, weights 0
/// and 65535, thresholds, and addresses and ports that sort differently
/// as text and as numbers.
async fn build_varied_table_with_our_client(handle: &IpvsHandle) {
    modprobe("ip_vs_pe_sip");
    let masq = IpvsForwardingMethod::Masquerade;
    let tunnel = |address: &str, port, kind, tunnel_port, flags| {
        let mut destination =
            IpvsDestination::new(ip(address), port, IpvsForwardingMethod::Tunnel, 1);
        destination.tunnel_type = kind;
        destination.tunnel_port = tunnel_port;
        destination.tunnel_flags = IpvsTunnelFlags(flags);
        destination
    };
    let with_flags = |mut service: IpvsService, flags: u32| {
        service.flags = IpvsServiceFlags(service.flags.0 | flags);
        service
    };
    let fwmark = |family, mark| IpvsServiceKey::Fwmark { family, mark };

    let mut thresholds = IpvsDestination::new(ip("10.1.0.9"), 80, masq, 65535);
    thresholds.upper_threshold = 100;
    thresholds.lower_threshold = 10;
    let mut masked =
        IpvsService::new(IpvsServiceKey::tcp(ip("10.0.0.14"), 443), "wlc").persistent(600);
    masked.netmask = IpvsNetmask::ipv4("255.255.255.0".parse().unwrap());
    let mut sip = IpvsService::new(IpvsServiceKey::udp(ip("10.0.0.16"), 5060), "rr").persistent(60);
    sip.persistence_engine = Some("sip".into());
    let mut sip_ops = with_flags(
        IpvsService::new(IpvsServiceKey::udp(ip("10.0.0.20"), 5060), "rr").persistent(60),
        IpvsServiceFlags::ONE_PACKET,
    );
    sip_ops.netmask = IpvsNetmask::ipv4("255.255.0.0".parse().unwrap());
    sip_ops.persistence_engine = Some("sip".into());
    let mut masked6 =
        IpvsService::new(IpvsServiceKey::tcp(ip("2001:db8::9"), 80), "rr").persistent(120);
    masked6.netmask = IpvsNetmask::ipv6_prefix(64);
    let mut masked_fwmark6 =
        IpvsService::new(fwmark(IpvsAddressFamily::Inet6, 44), "rr").persistent(60);
    masked_fwmark6.netmask = IpvsNetmask::ipv6_prefix(96);

    let table: Vec<(IpvsService, Vec<IpvsDestination>)> = vec![
        (
            IpvsService::new(IpvsServiceKey::tcp(ip("10.0.0.10"), 80), "rr"),
            vec![
                IpvsDestination::new(ip("10.1.0.10"), 8080, masq, 1),
                IpvsDestination::new(ip("10.1.0.9"), 8080, masq, 0),
                thresholds,
                IpvsDestination::new(ip("127.0.0.1"), 80, masq, 2),
            ],
        ),
        (
            IpvsService::new(IpvsServiceKey::tcp(ip("10.0.0.9"), 8080), "wlc"),
            vec![IpvsDestination::new(ip("10.1.0.90"), 8080, masq, 1)],
        ),
        (
            IpvsService::new(IpvsServiceKey::tcp(ip("10.0.0.9"), 80), "wrr"),
            vec![
                IpvsDestination::new(ip("10.1.0.20"), 80, IpvsForwardingMethod::DirectRoute, 3),
                tunnel("10.1.0.21", 80, IpvsTunnelType::Ipip, 0, 0),
                tunnel(
                    "10.1.0.22",
                    80,
                    IpvsTunnelType::Gue,
                    6080,
                    IpvsTunnelFlags::NO_CHECKSUM,
                ),
                tunnel(
                    "10.1.0.23",
                    80,
                    IpvsTunnelType::Gue,
                    6081,
                    IpvsTunnelFlags::CHECKSUM,
                ),
                tunnel(
                    "10.1.0.25",
                    80,
                    IpvsTunnelType::Gue,
                    6082,
                    IpvsTunnelFlags::REMOTE_CHECKSUM,
                ),
                tunnel(
                    "10.1.0.24",
                    80,
                    IpvsTunnelType::Gre,
                    0,
                    IpvsTunnelFlags::CHECKSUM,
                ),
                tunnel(
                    "10.1.0.26",
                    80,
                    IpvsTunnelType::Gre,
                    0,
                    IpvsTunnelFlags::NO_CHECKSUM,
                ),
                tunnel("2001:db8:1::99", 80, IpvsTunnelType::Ipip, 0, 0),
            ],
        ),
        (
            with_flags(
                IpvsService::new(IpvsServiceKey::udp(ip("10.0.0.9"), 53), "rr"),
                IpvsServiceFlags::ONE_PACKET,
            ),
            vec![
                IpvsDestination::new(ip("10.1.0.53"), 53, masq, 1),
                IpvsDestination::new(ip("10.1.0.54"), 53, masq, 1),
            ],
        ),
        (
            IpvsService::new(IpvsServiceKey::udp(ip("10.0.0.10"), 53), "wrr"),
            vec![IpvsDestination::new(ip("10.1.0.55"), 5353, masq, 4)],
        ),
        (
            IpvsService::new(IpvsServiceKey::sctp(ip("10.0.0.11"), 3868), "lc"),
            vec![IpvsDestination::new(ip("10.1.0.11"), 3868, masq, 2)],
        ),
        (
            with_flags(
                IpvsService::new(IpvsServiceKey::tcp(ip("10.0.0.12"), 443), "sh"),
                IpvsServiceFlags::SCHED1 | IpvsServiceFlags::SCHED2,
            ),
            vec![IpvsDestination::new(ip("10.1.0.12"), 443, masq, 1)],
        ),
        (
            with_flags(
                IpvsService::new(IpvsServiceKey::tcp(ip("10.0.0.13"), 443), "mh"),
                IpvsServiceFlags::SCHED2,
            ),
            vec![],
        ),
        (
            with_flags(
                IpvsService::new(IpvsServiceKey::tcp(ip("10.0.0.17"), 443), "mh"),
                IpvsServiceFlags::SCHED1 | IpvsServiceFlags::SCHED2,
            ),
            vec![],
        ),
        (
            with_flags(
                IpvsService::new(IpvsServiceKey::tcp(ip("10.0.0.19"), 80), "rr"),
                IpvsServiceFlags::SCHED1 | IpvsServiceFlags::SCHED3,
            ),
            vec![],
        ),
        (
            masked,
            vec![IpvsDestination::new(ip("10.1.0.14"), 443, masq, 1)],
        ),
        (
            IpvsService::new(IpvsServiceKey::tcp(ip("10.0.0.15"), 0), "rr").persistent(360),
            vec![],
        ),
        (sip, vec![]),
        (sip_ops, vec![]),
        (
            IpvsService::new(IpvsServiceKey::tcp(ip("2001:db8::10"), 80), "rr"),
            vec![
                IpvsDestination::new(ip("2001:db8:1::10"), 8080, masq, 1),
                IpvsDestination::new(ip("2001:db8:1::9"), 8080, masq, 1),
                IpvsDestination::new(ip("2001:db8:1::9"), 80, masq, 1),
                tunnel("10.1.0.30", 80, IpvsTunnelType::Ipip, 0, 0),
                tunnel(
                    "10.1.0.31",
                    80,
                    IpvsTunnelType::Gue,
                    6080,
                    IpvsTunnelFlags::NO_CHECKSUM,
                ),
            ],
        ),
        (masked6, vec![]),
        (
            IpvsService::new(IpvsServiceKey::tcp(ip("2001:db8::9"), 443), "rr").persistent(120),
            vec![],
        ),
        (
            IpvsService::new(IpvsServiceKey::udp(ip("2001:db8::53"), 53), "rr"),
            vec![],
        ),
        (
            IpvsService::new(IpvsServiceKey::sctp(ip("2001:db8::11"), 3868), "rr"),
            vec![],
        ),
        (
            IpvsService::new(fwmark(IpvsAddressFamily::Inet, 42), "rr"),
            vec![
                IpvsDestination::new(ip("10.1.0.42"), 80, masq, 1),
                IpvsDestination::new(ip("10.1.0.43"), 0, IpvsForwardingMethod::DirectRoute, 1),
            ],
        ),
        (
            IpvsService::new(fwmark(IpvsAddressFamily::Inet, 7), "wlc").persistent(30),
            vec![],
        ),
        (
            IpvsService::new(fwmark(IpvsAddressFamily::Inet6, 43), "wrr").persistent(60),
            vec![IpvsDestination::new(ip("2001:db8:1::43"), 80, masq, 1)],
        ),
        (masked_fwmark6, vec![]),
        (
            IpvsService::new(fwmark(IpvsAddressFamily::Inet6, 42), "rr"),
            vec![],
        ),
        // Marks from 2^31 on: printed negative, sorted first.
        (
            IpvsService::new(fwmark(IpvsAddressFamily::Inet, 3_000_000_000), "rr"),
            vec![],
        ),
    ];
    for (service, destinations) in &table {
        handle
            .add_service(service)
            .await
            .unwrap_or_else(|e| panic!("add {}: {e}", service.key));
        for destination in destinations {
            handle
                .add_destination(&service.key, destination)
                .await
                .unwrap_or_else(|e| panic!("add {} to {}: {e}", destination.key, service.key));
        }
    }
}

#[tokio::test]
async fn table_built_by_our_client_formats_like_ipvsadm() {
    require_guest();
    clear_table();
    let handle = connect();
    build_varied_table_with_our_client(&handle).await;
    assert_formats_like_ipvsadm(&handle).await;
    clear_table();
}

/// The same variety, built by ipvsadm itself (the commands of the unit
/// tests' captures, netlink-ipvs/src/format/tests).
const VARIED_COMMANDS: &[&str] = &[
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

#[tokio::test]
async fn table_built_by_ipvsadm_formats_like_ipvsadm() {
    require_guest();
    clear_table();
    modprobe("ip_vs_pe_sip");
    add_commands(VARIED_COMMANDS);
    let handle = connect();
    assert_formats_like_ipvsadm(&handle).await;
    clear_table();
}

/// Addresses and fwmarks more than 2^31 apart, where ipvsadm's
/// subtracting comparators wrap and are no longer transitive: the order
/// then depends on glibc's merge sort and the kernel's dump order.
#[tokio::test]
async fn wrapping_sort_order_matches_ipvsadm() {
    require_guest();
    clear_table();
    let mut commands: Vec<String> = [
        "10.0.0.1",
        "100.0.0.1",
        "172.16.0.1",
        "192.168.0.1",
        "200.0.0.1",
        "10.0.0.2",
        "127.0.0.5",
        "128.0.0.5",
        "203.0.113.7",
        "1.2.3.4",
        "250.1.1.1",
    ]
    .iter()
    .map(|address| format!("-A -t {address}:80 -s rr"))
    .collect();
    for real in [
        "10.1.0.1",
        "100.1.0.1",
        "172.16.1.1",
        "192.168.1.1",
        "200.1.0.1",
        "1.1.1.1",
        "129.0.0.1",
        "250.0.0.1",
    ] {
        commands.push(format!("-a -t 10.0.0.1:80 -r {real}:80 -m -w 1"));
    }
    commands.extend(
        [
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
        ]
        .map(String::from),
    );
    let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
    add_commands(&commands);
    let handle = connect();
    assert_formats_like_ipvsadm(&handle).await;
    clear_table();
}

/// Runs `ip` with `args`; fails the test if it fails.
fn ip_command(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run ip: {e}"));
    assert!(status.success(), "ip {} failed", args.join(" "));
}

/// Non-zero counters and rates: UDP datagrams from this host to a
/// virtual address on a dummy interface, forwarded (NAT) to real servers
/// routed into the same dummy. UDP connections live for minutes, so the
/// connection counts do not move while the texts are compared.
#[tokio::test]
async fn counters_and_rates_format_like_ipvsadm() {
    require_guest();
    clear_table();
    let _ = Command::new("ip")
        .args(["link", "del", "ipvsfmt0"])
        .status();
    ip_command(&["link", "add", "ipvsfmt0", "type", "dummy"]);
    ip_command(&["link", "set", "ipvsfmt0", "up"]);
    ip_command(&["addr", "add", "10.0.5.1/32", "dev", "ipvsfmt0"]);
    ip_command(&["route", "add", "10.5.0.0/16", "dev", "ipvsfmt0"]);
    add_commands(&[
        "-A -u 10.0.5.1:53 -s rr",
        "-a -u 10.0.5.1:53 -r 10.5.0.1:53 -m -w 1",
        "-a -u 10.0.5.1:53 -r 10.5.0.2:5353 -m -w 2",
        "-A -u 10.0.5.1:5353 -s wrr -o",
        "-a -u 10.0.5.1:5353 -r 10.5.0.3:53 -m -w 1",
    ]);
    let payload = [0u8; 200];
    for round in 0..3 {
        for _ in 0..200 {
            // A new socket, a new source port: a new connection each time.
            let socket = UdpSocket::bind("0.0.0.0:0").expect("bind a UDP socket");
            socket
                .send_to(&payload, "10.0.5.1:53")
                .expect("send to the VIP");
            socket
                .send_to(&payload[..50], "10.0.5.1:5353")
                .expect("send to the VIP");
        }
        if round < 2 {
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    }
    // Let the estimator (every 2 s) see the traffic.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let handle = connect();
    let table = handle.table().await.unwrap();
    let connections: u64 = table
        .iter()
        .filter_map(|entry| entry.service.stats.as_deref())
        .map(|stats| stats.connections)
        .sum();
    assert!(connections > 0, "the traffic did not reach IPVS: {table:?}");
    let rates: u64 = table
        .iter()
        .filter_map(|entry| entry.service.stats.as_deref())
        .map(|stats| stats.in_byte_rate)
        .sum();
    assert!(rates > 0, "the estimator shows no rate yet: {table:?}");
    assert_formats_like_ipvsadm(&handle).await;

    // Zeroed counters and rates.
    ipvsadm(&["-Z"]);
    assert_formats_like_ipvsadm(&handle).await;

    clear_table();
    ip_command(&["link", "del", "ipvsfmt0"]);
}
