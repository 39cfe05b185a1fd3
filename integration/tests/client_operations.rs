//! Every client operation against the real kernel, read back both through
//! our client and through `ipvsadm`.

use std::net::IpAddr;

use integration::{clear_table, connect, ipvsadm, require_guest};
use netlink_ipvs::{
    IpvsAddressFamily, IpvsDaemon, IpvsDaemonState, IpvsDestination, IpvsDestinationKey,
    IpvsForwardingMethod, IpvsNetmask, IpvsOperation, IpvsService, IpvsServiceFlags,
    IpvsServiceKey, IpvsTimeouts, IpvsTunnelFlags, IpvsTunnelType,
};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

/// A service as the kernel reports it back: our model without counters.
fn without_stats(mut service: IpvsService) -> IpvsService {
    service.stats = None;
    service
}

fn destination_without_counters(mut destination: IpvsDestination) -> IpvsDestination {
    destination.stats = None;
    destination.active_connections = 0;
    destination.inactive_connections = 0;
    destination.persistent_connections = 0;
    destination
}

#[tokio::test]
async fn services_of_every_kind_round_trip() {
    require_guest();
    clear_table();
    let handle = connect();

    let mut sh = IpvsService::new(IpvsServiceKey::tcp(ip("10.0.0.3"), 80), "sh");
    sh.flags = IpvsServiceFlags(IpvsServiceFlags::SCHED1 | IpvsServiceFlags::SCHED2);
    let mut one_packet = IpvsService::new(IpvsServiceKey::udp(ip("10.0.0.4"), 53), "rr");
    one_packet.flags = IpvsServiceFlags(IpvsServiceFlags::ONE_PACKET);
    let mut masked =
        IpvsService::new(IpvsServiceKey::tcp(ip("10.0.0.5"), 443), "wlc").persistent(600);
    masked.netmask = IpvsNetmask::ipv4("255.255.255.0".parse().unwrap());
    let mut masked6 =
        IpvsService::new(IpvsServiceKey::tcp(ip("2001:db8::5"), 443), "lc").persistent(60);
    masked6.netmask = IpvsNetmask::ipv6_prefix(64);
    let services = vec![
        IpvsService::new(IpvsServiceKey::tcp(ip("10.0.0.1"), 80), "rr"),
        IpvsService::new(IpvsServiceKey::udp(ip("10.0.0.1"), 53), "wrr"),
        IpvsService::new(IpvsServiceKey::sctp(ip("10.0.0.2"), 3868), "rr"),
        IpvsService::new(IpvsServiceKey::tcp(ip("2001:db8::1"), 8080), "wlc"),
        IpvsService::new(IpvsServiceKey::udp(ip("2001:db8::1"), 53), "rr"),
        IpvsService::new(
            IpvsServiceKey::Fwmark {
                family: IpvsAddressFamily::Inet,
                mark: 42,
            },
            "rr",
        ),
        IpvsService::new(
            IpvsServiceKey::Fwmark {
                family: IpvsAddressFamily::Inet6,
                mark: 43,
            },
            "wrr",
        ),
        sh,
        one_packet,
        masked,
        masked6,
    ];
    for service in &services {
        handle
            .add_service(service)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for service in &services {
        let read = handle
            .service(&service.key)
            .await
            .expect("read back one service");
        assert_eq!(&without_stats(read), service);
    }
    let mut dumped: Vec<_> = handle
        .services()
        .await
        .unwrap()
        .into_iter()
        .map(without_stats)
        .collect();
    assert_eq!(dumped.len(), services.len());
    dumped.sort_by_key(|s| s.key.to_string());
    let mut expected = services.clone();
    expected.sort_by_key(|s| s.key.to_string());
    assert_eq!(dumped, expected);

    // ipvsadm sees what we wrote.
    let saved = ipvsadm(&["-Sn"]);
    for line in [
        "-A -t 10.0.0.1:80 -s rr",
        "-A -u 10.0.0.1:53 -s wrr",
        "-A --sctp-service 10.0.0.2:3868 -s rr",
        "-A -t [2001:db8::1]:8080 -s wlc",
        "-A -f 42 -s rr",
        "-A -f 43 -6 -s wrr",
        "-A -t 10.0.0.3:80 -s sh -b sh-fallback,sh-port",
        "-A -u 10.0.0.4:53 -s rr -o",
        "-A -t 10.0.0.5:443 -s wlc -p 600 -M 255.255.255.0",
        "-A -t [2001:db8::5]:443 -s lc -p 60 -M 64",
    ] {
        assert!(
            saved.lines().any(|l| l.trim_end() == line),
            "ipvsadm -Sn lacks {line:?}:\n{saved}"
        );
    }
    clear_table();
}

#[tokio::test]
async fn edit_and_delete_service() {
    require_guest();
    clear_table();
    let handle = connect();
    let key = IpvsServiceKey::tcp(ip("10.0.1.1"), 80);
    let mut service = IpvsService::new(key, "rr");
    handle.add_service(&service).await.unwrap();
    service.scheduler = "wlc".into();
    service = service.persistent(300);
    handle.edit_service(&service).await.unwrap();
    assert_eq!(without_stats(handle.service(&key).await.unwrap()), service);
    assert!(ipvsadm(&["-Ln"]).contains("TCP  10.0.1.1:80 wlc persistent 300"));
    handle.delete_service(&key).await.unwrap();
    assert!(handle.services().await.unwrap().is_empty());
    clear_table();
}

#[tokio::test]
async fn destinations_of_every_kind_round_trip() {
    require_guest();
    clear_table();
    let handle = connect();
    let v4 = IpvsServiceKey::tcp(ip("10.0.2.1"), 80);
    handle
        .add_service(&IpvsService::new(v4, "wrr"))
        .await
        .unwrap();
    let v6 = IpvsServiceKey::tcp(ip("2001:db8::2"), 80);
    handle
        .add_service(&IpvsService::new(v6, "wrr"))
        .await
        .unwrap();

    let masq = IpvsDestination::new(ip("10.244.0.11"), 9376, IpvsForwardingMethod::Masquerade, 1);
    let route = IpvsDestination::new(ip("10.244.0.12"), 80, IpvsForwardingMethod::DirectRoute, 0);
    let mut thresholds =
        IpvsDestination::new(ip("10.244.0.13"), 9376, IpvsForwardingMethod::Tunnel, 5);
    thresholds.upper_threshold = 100;
    thresholds.lower_threshold = 10;
    let mut gue = IpvsDestination::new(ip("10.244.0.14"), 9376, IpvsForwardingMethod::Tunnel, 2);
    gue.tunnel_type = IpvsTunnelType::Gue;
    gue.tunnel_port = 6080;
    gue.tunnel_flags = IpvsTunnelFlags(IpvsTunnelFlags::CHECKSUM);
    let mut gre = IpvsDestination::new(ip("10.244.0.15"), 9376, IpvsForwardingMethod::Tunnel, 3);
    gre.tunnel_type = IpvsTunnelType::Gre;
    // A mixed-family real server: IPv6 behind an IPv4 service (tunnel only).
    let mixed = IpvsDestination::new(ip("2001:db8::16"), 9376, IpvsForwardingMethod::Tunnel, 1);
    let v4_destinations = vec![masq, route, thresholds, gue, gre, mixed];
    for destination in &v4_destinations {
        handle
            .add_destination(&v4, destination)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let v6_destination =
        IpvsDestination::new(ip("2001:db8::21"), 80, IpvsForwardingMethod::Masquerade, 7);
    handle.add_destination(&v6, &v6_destination).await.unwrap();

    let mut read: Vec<_> = handle
        .destinations(&v4)
        .await
        .unwrap()
        .into_iter()
        .map(destination_without_counters)
        .collect();
    read.sort_by_key(|d| d.key);
    let mut expected = v4_destinations.clone();
    expected.sort_by_key(|d| d.key);
    assert_eq!(read, expected);
    let read6: Vec<_> = handle
        .destinations(&v6)
        .await
        .unwrap()
        .into_iter()
        .map(destination_without_counters)
        .collect();
    assert_eq!(read6, vec![v6_destination]);

    let listed = ipvsadm(&["-Ln", "-t", "10.0.2.1:80"]);
    for fragment in [
        "  -> 10.244.0.11:9376             Masq    1 ",
        "  -> 10.244.0.12:80               Route   0 ",
        "  -> 10.244.0.13:9376             Tunnel  5 ",
        "  -> [2001:db8::16]:9376          Tunnel  1 ",
    ] {
        assert!(
            listed.contains(fragment),
            "ipvsadm -Ln lacks {fragment:?}:\n{listed}"
        );
    }
    let thresholds_listed = ipvsadm(&["-Ln", "--thresholds", "-t", "10.0.2.1:80"]);
    assert!(
        thresholds_listed.contains("100") && thresholds_listed.contains("10.244.0.13:9376"),
        "{thresholds_listed}"
    );

    // Edit: weight and thresholds change in place.
    let mut edited = v4_destinations[0].clone();
    edited.weight = 9;
    edited.upper_threshold = 50;
    handle.edit_destination(&v4, &edited).await.unwrap();
    let after: Vec<_> = handle.destinations(&v4).await.unwrap();
    let found = after.iter().find(|d| d.key == edited.key).unwrap();
    assert_eq!(destination_without_counters(found.clone()), edited);

    // Delete one.
    handle.delete_destination(&v4, &edited.key).await.unwrap();
    let after = handle.destinations(&v4).await.unwrap();
    assert_eq!(after.len(), v4_destinations.len() - 1);
    assert!(after.iter().all(|d| d.key != edited.key));
    clear_table();
}

#[tokio::test]
async fn kernel_errors_keep_their_errno_and_name_the_object() {
    require_guest();
    clear_table();
    let handle = connect();
    let key = IpvsServiceKey::tcp(ip("10.0.3.1"), 80);
    let service = IpvsService::new(key, "rr");
    handle.add_service(&service).await.unwrap();

    let duplicate = handle.add_service(&service).await.unwrap_err();
    assert!(duplicate.is_already_exists(), "{duplicate}");
    assert_eq!(duplicate.errno(), Some(17));
    assert!(
        duplicate
            .to_string()
            .contains("add service TCP 10.0.3.1:80"),
        "{duplicate}"
    );

    let missing = IpvsServiceKey::tcp(ip("10.0.3.2"), 80);
    let no_service = handle.delete_service(&missing).await.unwrap_err();
    assert!(no_service.is_no_such_service(), "{no_service}");
    assert!(no_service
        .to_string()
        .contains("delete service TCP 10.0.3.2:80"));
    let no_service = handle.service(&missing).await.unwrap_err();
    assert!(no_service.is_no_such_service(), "{no_service}");
    let no_service = handle
        .add_destination(
            &missing,
            &IpvsDestination::new(ip("10.244.1.1"), 80, IpvsForwardingMethod::Masquerade, 1),
        )
        .await
        .unwrap_err();
    assert!(no_service.is_no_such_service(), "{no_service}");

    let no_dest = handle
        .delete_destination(
            &key,
            &IpvsDestinationKey {
                address: ip("10.244.1.1"),
                port: 80,
            },
        )
        .await
        .unwrap_err();
    assert!(no_dest.is_not_found(), "{no_dest}");
    assert!(no_dest
        .to_string()
        .contains("delete real server 10.244.1.1:80 of TCP 10.0.3.1:80"));
    let no_dest = handle
        .edit_destination(
            &key,
            &IpvsDestination::new(ip("10.244.1.1"), 80, IpvsForwardingMethod::Masquerade, 1),
        )
        .await
        .unwrap_err();
    assert!(no_dest.is_not_found(), "{no_dest}");

    let destination =
        IpvsDestination::new(ip("10.244.1.2"), 80, IpvsForwardingMethod::Masquerade, 1);
    handle.add_destination(&key, &destination).await.unwrap();
    let duplicate = handle
        .add_destination(&key, &destination)
        .await
        .unwrap_err();
    assert!(duplicate.is_already_exists(), "{duplicate}");

    let unknown_scheduler =
        IpvsService::new(IpvsServiceKey::tcp(ip("10.0.3.3"), 80), "nosuchsched");
    let error = handle.add_service(&unknown_scheduler).await.unwrap_err();
    assert!(error.is_not_found(), "{error}");

    // A weight above i32::MAX is refused with ERANGE.
    let heavy = IpvsDestination::new(
        ip("10.244.1.3"),
        80,
        IpvsForwardingMethod::Masquerade,
        u32::MAX,
    );
    let error = handle.add_destination(&key, &heavy).await.unwrap_err();
    assert_eq!(error.errno(), Some(34), "{error}");
    clear_table();
}

#[tokio::test]
async fn config_info_zero_flush_and_daemon() {
    require_guest();
    clear_table();
    let handle = connect();

    let info = handle.info().await.unwrap();
    assert_eq!(info.version, 0x010201);
    let first_line = ipvsadm(&["-Ln"]).lines().next().unwrap().to_string();
    assert_eq!(
        first_line,
        format!(
            "IP Virtual Server version {} (size={})",
            netlink_ipvs::IpvsVersion(info.version),
            info.connection_table_size
        )
    );

    let timeouts = IpvsTimeouts {
        tcp: 901,
        tcp_fin: 121,
        udp: 301,
    };
    handle.set_timeouts(&timeouts).await.unwrap();
    assert_eq!(handle.timeouts().await.unwrap(), timeouts);
    assert!(ipvsadm(&["-L", "--timeout"]).contains("Timeout (tcp tcpfin udp): 901 121 301"));
    // 0 leaves a value unchanged.
    handle
        .set_timeouts(&IpvsTimeouts {
            tcp: 900,
            tcp_fin: 0,
            udp: 0,
        })
        .await
        .unwrap();
    assert_eq!(
        handle.timeouts().await.unwrap(),
        IpvsTimeouts {
            tcp: 900,
            tcp_fin: 121,
            udp: 301
        }
    );
    handle
        .set_timeouts(&IpvsTimeouts {
            tcp: 900,
            tcp_fin: 120,
            udp: 300,
        })
        .await
        .unwrap();

    let key = IpvsServiceKey::tcp(ip("10.0.4.1"), 80);
    handle
        .add_service(&IpvsService::new(key, "rr"))
        .await
        .unwrap();
    handle.zero(Some(&key)).await.unwrap();
    handle.zero(None).await.unwrap();
    let missing = handle
        .zero(Some(&IpvsServiceKey::tcp(ip("10.0.4.2"), 80)))
        .await
        .unwrap_err();
    assert!(missing.is_no_such_service(), "{missing}");
    let stats = handle
        .service(&key)
        .await
        .unwrap()
        .stats
        .expect("the kernel sends counters");
    assert_eq!(stats.connections, 0);

    handle.flush().await.unwrap();
    assert!(handle.services().await.unwrap().is_empty());
    assert_eq!(ipvsadm(&["-Sn"]), "");

    // A sync daemon on the loopback interface.
    let daemon = IpvsDaemon {
        state: IpvsDaemonState::Backup,
        interface: "lo".into(),
        sync_id: 7,
        extra: vec![],
    };
    handle.start_daemon(&daemon).await.unwrap();
    let daemons = handle.daemons().await.unwrap();
    assert_eq!(daemons.len(), 1, "{daemons:?}");
    assert_eq!(daemons[0].state, IpvsDaemonState::Backup);
    assert_eq!(daemons[0].interface, "lo");
    assert_eq!(daemons[0].sync_id, 7);
    assert!(ipvsadm(&["-L", "--daemon"]).contains("backup sync daemon (mcast=lo, syncid=7"));
    handle.stop_daemon(IpvsDaemonState::Backup).await.unwrap();
    assert!(handle.daemons().await.unwrap().is_empty());
}

#[tokio::test]
async fn batch_goes_on_after_a_failure_and_reports_each_result_in_order() {
    require_guest();
    clear_table();
    let handle = connect();
    let a = IpvsServiceKey::tcp(ip("10.0.5.1"), 80);
    let missing = IpvsServiceKey::tcp(ip("10.0.5.9"), 80);
    let destination = |n: u8| {
        IpvsDestination::new(
            ip(&format!("10.244.5.{n}")),
            80,
            IpvsForwardingMethod::Masquerade,
            1,
        )
    };
    let operations = vec![
        IpvsOperation::AddService(IpvsService::new(a, "rr")),
        IpvsOperation::AddDestination(a, destination(1)),
        IpvsOperation::AddService(IpvsService::new(a, "rr")), // EEXIST
        IpvsOperation::AddDestination(a, destination(2)),
        IpvsOperation::AddDestination(missing, destination(3)), // ESRCH
        IpvsOperation::DeleteDestination(a, destination(4).key), // ENOENT
        IpvsOperation::AddDestination(a, destination(5)),
    ];
    // Small requests so the failures straddle datagram boundaries.
    let results = handle
        .apply_with(
            &operations,
            netlink_ipvs::IpvsBatchOptions {
                max_in_flight: 4,
                messages_per_request: 2,
            },
        )
        .await;
    assert_eq!(results.len(), operations.len());
    assert!(
        results[0].is_ok() && results[1].is_ok() && results[3].is_ok() && results[6].is_ok(),
        "{results:?}"
    );
    assert!(results[2].as_ref().unwrap_err().is_already_exists());
    assert!(results[4].as_ref().unwrap_err().is_no_such_service());
    assert!(results[5].as_ref().unwrap_err().is_not_found());
    assert!(results[5]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("delete real server 10.244.5.4:80 of TCP 10.0.5.1:80"));
    let mut read: Vec<_> = handle
        .destinations(&a)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.key.address)
        .collect();
    read.sort();
    assert_eq!(
        read,
        vec![ip("10.244.5.1"), ip("10.244.5.2"), ip("10.244.5.5")]
    );
    clear_table();
}

#[tokio::test]
async fn ipvsadm_writes_are_read_correctly() {
    require_guest();
    clear_table();
    let handle = connect();
    ipvsadm(&[
        "-A",
        "-t",
        "10.0.6.1:80",
        "-s",
        "wlc",
        "-p",
        "120",
        "-M",
        "255.255.0.0",
    ]);
    ipvsadm(&[
        "-a",
        "-t",
        "10.0.6.1:80",
        "-r",
        "10.244.6.1:8080",
        "-m",
        "-w",
        "3",
        "-x",
        "20",
        "-y",
        "5",
    ]);
    ipvsadm(&[
        "-a",
        "-t",
        "10.0.6.1:80",
        "-r",
        "10.244.6.2:8080",
        "-g",
        "-w",
        "0",
    ]);
    ipvsadm(&["-A", "-u", "[2001:db8::6]:53", "-s", "sh", "-b", "sh-port"]);
    ipvsadm(&[
        "-a",
        "-u",
        "[2001:db8::6]:53",
        "-r",
        "[2001:db8::61]:5353",
        "-m",
    ]);
    ipvsadm(&["-A", "-f", "7", "-s", "rr"]);

    let key = IpvsServiceKey::tcp(ip("10.0.6.1"), 80);
    let mut expected = IpvsService::new(key, "wlc").persistent(120);
    expected.netmask = IpvsNetmask::ipv4("255.255.0.0".parse().unwrap());
    assert_eq!(without_stats(handle.service(&key).await.unwrap()), expected);

    let mut destinations: Vec<_> = handle
        .destinations(&key)
        .await
        .unwrap()
        .into_iter()
        .map(destination_without_counters)
        .collect();
    destinations.sort_by_key(|d| d.key);
    let mut first =
        IpvsDestination::new(ip("10.244.6.1"), 8080, IpvsForwardingMethod::Masquerade, 3);
    first.upper_threshold = 20;
    first.lower_threshold = 5;
    // ipvsadm gives a direct-routing real server the service's port
    // (packets are not rewritten), whatever port the command names.
    let second = IpvsDestination::new(ip("10.244.6.2"), 80, IpvsForwardingMethod::DirectRoute, 0);
    assert_eq!(destinations, vec![first, second]);

    let key6 = IpvsServiceKey::udp(ip("2001:db8::6"), 53);
    let mut expected6 = IpvsService::new(key6, "sh");
    expected6.flags = IpvsServiceFlags(IpvsServiceFlags::SCHED2);
    assert_eq!(
        without_stats(handle.service(&key6).await.unwrap()),
        expected6
    );
    let destinations6 = handle.destinations(&key6).await.unwrap();
    assert_eq!(destinations6.len(), 1);
    assert_eq!(
        destinations6[0].key,
        IpvsDestinationKey {
            address: ip("2001:db8::61"),
            port: 5353
        }
    );
    assert_eq!(destinations6[0].weight, 1);

    let fwmark = IpvsServiceKey::Fwmark {
        family: IpvsAddressFamily::Inet,
        mark: 7,
    };
    assert_eq!(
        without_stats(handle.service(&fwmark).await.unwrap()),
        IpvsService::new(fwmark, "rr")
    );
    assert_eq!(handle.services().await.unwrap().len(), 3);
    clear_table();
}

/// A receive buffer overrun (ENOBUFS) in the middle of a batch: 5,000
/// virtual servers sent as 5,000 datagrams, every one asking for an ACK,
/// none read before all are sent, so the answers overrun the socket's
/// receive buffer and the kernel drops some. What the batch reports stays
/// true: an operation reported done is in the kernel (no false success),
/// the ones whose answer was lost say so (ENOBUFS), and sending the same
/// batch again (as the agent's next sync does after re-reading) ends with
/// all 5,000 in the kernel.
#[tokio::test]
async fn receive_buffer_overrun_reports_no_false_success() {
    const SERVICES: u32 = 5_000;
    require_guest();
    clear_table();
    let handle = connect();
    let key =
        |n: u32| IpvsServiceKey::tcp(IpAddr::from(std::net::Ipv4Addr::from(0x0a64_0000 + n)), 80);
    let operations: Vec<IpvsOperation> = (0..SERVICES)
        .map(|n| IpvsOperation::AddService(IpvsService::new(key(n), "rr")))
        .collect();
    let overrun = netlink_ipvs::IpvsBatchOptions {
        max_in_flight: SERVICES as usize,
        messages_per_request: 1,
    };
    eprintln!("ENOBUFS test: sending {SERVICES} unread");
    let results = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        handle.apply_with(&operations, overrun),
    )
    .await
    .expect("the overrun batch ends");
    eprintln!("ENOBUFS test: batch answered");
    assert_eq!(results.len(), operations.len());
    let lost: Vec<usize> = (0..results.len())
        .filter(|&index| {
            results[index]
                .as_ref()
                .is_err_and(|error| error.to_string().contains("ENOBUFS"))
        })
        .collect();
    let other_errors: Vec<String> = results
        .iter()
        .filter_map(|result| result.as_ref().err())
        .map(ToString::to_string)
        .filter(|text| !text.contains("ENOBUFS"))
        .collect();
    let in_kernel: std::collections::BTreeSet<IpvsServiceKey> = handle
        .services()
        .await
        .expect("dump the virtual servers")
        .into_iter()
        .map(|service| service.key)
        .collect();
    eprintln!("ENOBUFS test: dumped {}", in_kernel.len());
    let false_successes = (0..SERVICES)
        .filter(|&n| results[n as usize].is_ok() && !in_kernel.contains(&key(n)))
        .count();
    eprintln!(
        "faults: ENOBUFS: {SERVICES} sent unread, {} answers lost (ENOBUFS), {} reported done, \
         {} in the kernel, {false_successes} false successes, other errors: {}",
        lost.len(),
        results.iter().filter(|result| result.is_ok()).count(),
        in_kernel.len(),
        other_errors.len()
    );
    assert!(
        !lost.is_empty(),
        "the batch must overrun the receive buffer"
    );
    assert_eq!(
        false_successes, 0,
        "an operation reported done is in the kernel"
    );
    assert!(
        other_errors.is_empty(),
        "{:?}",
        &other_errors[..other_errors.len().min(5)]
    );

    // Again with the default pacing, as the agent's next sync would: all
    // of them are there, so every message fails (EEXIST) and is answered
    // on its own, which overruns the buffer at the default pace too; the
    // socket halves its pace at each overrun and keeps it, so within a
    // few tries every answer is an EEXIST.
    let mut tries = Vec::new();
    for _ in 0..5 {
        let again = handle.apply(&operations).await;
        let lost = again
            .iter()
            .filter(|result| {
                result
                    .as_ref()
                    .is_err_and(|error| error.to_string().contains("ENOBUFS"))
            })
            .count();
        let unexpected: Vec<String> = again
            .iter()
            .filter_map(|result| result.as_ref().err())
            .filter(|error| !error.is_already_exists() && !error.to_string().contains("ENOBUFS"))
            .map(ToString::to_string)
            .collect();
        assert!(
            unexpected.is_empty(),
            "{:?}",
            &unexpected[..unexpected.len().min(5)]
        );
        tries.push(lost);
        if lost == 0 {
            break;
        }
    }
    eprintln!("faults: ENOBUFS: the same batch again at the default pace, answers lost per try: {tries:?}");
    assert_eq!(tries.last(), Some(&0), "answers lost per try: {tries:?}");
    assert_eq!(
        handle.services().await.expect("dump").len(),
        SERVICES as usize
    );
    clear_table();
}
