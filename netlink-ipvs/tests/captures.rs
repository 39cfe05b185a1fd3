//! Byte-exact tests against real traffic: each file in `tests/captures/`
//! holds the netlink messages of one `ipvsadm` command, captured with
//! `nlmon` in the real-kernel guest (`integration/scripts/capture.sh`):
//! `>` lines were sent by ipvsadm, `<` lines by the kernel.
//!
//! For every message: parse(bytes) succeeds and emit(parse(bytes)) == bytes.
//! For the requests named in `TYPED`, the typed model built by hand gives
//! the very bytes ipvsadm sent.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use netlink_ipvs::{
    IpvsAddressFamily, IpvsAttribute, IpvsCommand, IpvsCounters, IpvsDestination,
    IpvsDestinationKey, IpvsForwardingMethod, IpvsMessage, IpvsNetmask, IpvsOperation, IpvsService,
    IpvsServiceFlags, IpvsServiceKey, IpvsTimeouts, IpvsTunnelType,
};
use netlink_packet_core::{Emitable, NetlinkMessage, NetlinkPayload};
use netlink_packet_generic::GenlMessage;

const NLMSG_HDRLEN: usize = 16;
const GENL_HDRLEN: usize = 4;

#[derive(Debug)]
struct Capture {
    name: String,
    command: String,
    /// (sent by userspace, bytes of one whole netlink message)
    messages: Vec<(bool, Vec<u8>)>,
}

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures")
}

fn read_capture(path: &Path) -> Capture {
    let text = std::fs::read_to_string(path).unwrap();
    let mut command = String::new();
    let mut messages = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# command:") {
            command = rest.trim().to_string();
        } else if let Some((direction, hex)) = line
            .strip_prefix('>')
            .map(|h| (true, h))
            .or_else(|| line.strip_prefix('<').map(|h| (false, h)))
        {
            let digits: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = (0..digits.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex"))
                .collect();
            messages.push((direction, bytes));
        }
    }
    Capture {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        command,
        messages,
    }
}

fn all_captures() -> Vec<Capture> {
    let mut paths: Vec<_> = std::fs::read_dir(captures_dir())
        .expect("tests/captures exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    paths.iter().map(|p| read_capture(p)).collect()
}

fn capture(name: &str) -> Capture {
    read_capture(&captures_dir().join(format!("{name}.txt")))
}

/// The IPVS payload (attributes, after the genl header) of a request.
fn request_payload(bytes: &[u8]) -> (u8, &[u8]) {
    (bytes[NLMSG_HDRLEN], &bytes[NLMSG_HDRLEN + GENL_HDRLEN..])
}

#[test]
fn every_captured_message_parses_and_emits_the_same_bytes() {
    let captures = all_captures();
    assert!(
        captures.len() >= 20,
        "expected the committed captures, found {}",
        captures.len()
    );
    let mut checked = 0;
    for capture in &captures {
        assert!(
            !capture.messages.is_empty(),
            "{}: no messages",
            capture.name
        );
        for (sent, bytes) in &capture.messages {
            let message = NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(bytes)
                .unwrap_or_else(|e| {
                    panic!("{} ({}): parse failed: {e}", capture.name, capture.command)
                });
            if let NetlinkPayload::InnerMessage(genl) = &message.payload {
                // Unknown attributes are kept, never dropped.
                let mut emitted = vec![0u8; message.buffer_len()];
                message.serialize(&mut emitted);
                assert_eq!(
                    &emitted,
                    bytes,
                    "{} ({}), {} message {:?}: emit(parse(bytes)) differs",
                    capture.name,
                    capture.command,
                    if *sent { "sent" } else { "received" },
                    genl.payload.command
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The command's own request: the last one ipvsadm sent (it sends GET_INFO
/// first, whatever the command).
fn command_request(name: &str) -> (Vec<u8>, IpvsMessage) {
    let capture = capture(name);
    let (_, bytes) = capture
        .messages
        .iter()
        .rfind(|(sent, _)| *sent)
        .unwrap_or_else(|| panic!("{name}: no request"));
    let message = NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(bytes).unwrap();
    match message.payload {
        NetlinkPayload::InnerMessage(genl) => (bytes.clone(), genl.payload),
        other => panic!("{name}: not an IPVS request: {other:?}"),
    }
}

/// Asserts that `expected`, encoded by us, is byte for byte what ipvsadm
/// sent in capture `name`.
fn assert_same_request(name: &str, expected: &IpvsMessage) {
    let (bytes, parsed) = command_request(name);
    let (command, payload) = request_payload(&bytes);
    assert_eq!(command, u8::from(expected.command), "{name}: command");
    assert_eq!(&parsed, expected, "{name}: parsed request");
    let mut emitted = vec![0u8; expected.buffer_len()];
    expected.emit(&mut emitted);
    assert_eq!(emitted, payload, "{name}: our bytes differ from ipvsadm's");
}

fn service_request(name: &str, service: IpvsService, command: IpvsCommand) {
    let mut message = match command {
        IpvsCommand::NewService => IpvsOperation::AddService(service).to_message(),
        IpvsCommand::SetService => IpvsOperation::EditService(service).to_message(),
        other => panic!("not a service command: {other:?}"),
    };
    message.nested_flag = true;
    assert_same_request(name, &message);
}

#[test]
fn typed_services_encode_exactly_as_ipvsadm() {
    let tcp = IpvsServiceKey::tcp(ip("10.0.0.1"), 80);
    service_request(
        "add_service_tcp_rr",
        IpvsService::new(tcp, "rr"),
        IpvsCommand::NewService,
    );
    service_request(
        "error_duplicate_service",
        IpvsService::new(tcp, "rr"),
        IpvsCommand::NewService,
    );
    service_request(
        "edit_service",
        IpvsService::new(tcp, "wlc"),
        IpvsCommand::SetService,
    );
    service_request(
        "add_service_udp_wrr",
        IpvsService::new(IpvsServiceKey::udp(ip("10.0.0.1"), 53), "wrr"),
        IpvsCommand::NewService,
    );
    service_request(
        "add_service_sctp",
        IpvsService::new(IpvsServiceKey::sctp(ip("10.0.0.1"), 3868), "rr"),
        IpvsCommand::NewService,
    );
    let mut fwmark = IpvsService::new(
        IpvsServiceKey::Fwmark {
            family: IpvsAddressFamily::Inet,
            mark: 42,
        },
        "sh",
    );
    fwmark.flags = IpvsServiceFlags(IpvsServiceFlags::SCHED1 | IpvsServiceFlags::SCHED2);
    service_request(
        "add_service_fwmark_sh_flags",
        fwmark,
        IpvsCommand::NewService,
    );
    service_request(
        "add_service_ipv6_persistent",
        IpvsService::new(IpvsServiceKey::tcp(ip("2001:db8::1"), 443), "wlc").persistent(600),
        IpvsCommand::NewService,
    );
    let mut masked =
        IpvsService::new(IpvsServiceKey::tcp(ip("10.0.0.2"), 80), "rr").persistent(300);
    masked.netmask = IpvsNetmask::ipv4("255.255.255.0".parse().unwrap());
    service_request(
        "add_service_persistent_netmask",
        masked,
        IpvsCommand::NewService,
    );
    let mut mh = IpvsService::new(IpvsServiceKey::udp(ip("10.0.0.3"), 80), "mh");
    mh.flags = IpvsServiceFlags(IpvsServiceFlags::SCHED2 | IpvsServiceFlags::ONE_PACKET);
    service_request("add_service_mh_ops", mh, IpvsCommand::NewService);
    let mut sip = IpvsService::new(IpvsServiceKey::udp(ip("10.0.0.4"), 5060), "rr").persistent(60);
    sip.persistence_engine = Some("sip".into());
    service_request("add_service_pe_sip", sip, IpvsCommand::NewService);
}

#[test]
fn command_level_requests_encode_exactly_as_ipvsadm() {
    let timeouts = IpvsTimeouts {
        tcp: 900,
        tcp_fin: 120,
        udp: 300,
    };
    assert_same_request(
        "set_timeouts",
        &IpvsMessage::new(IpvsCommand::SetConfig, timeouts.to_attributes()),
    );
    assert_same_request("zero_all", &IpvsMessage::new(IpvsCommand::Zero, vec![]));
    assert_same_request("flush", &IpvsMessage::new(IpvsCommand::Flush, vec![]));
    assert_same_request(
        "get_timeouts",
        &IpvsMessage::new(IpvsCommand::GetConfig, vec![]),
    );
    let daemon = netlink_ipvs::IpvsDaemon {
        state: netlink_ipvs::IpvsDaemonState::Backup,
        interface: "lo".into(),
        sync_id: 7,
        extra: vec![],
    };
    assert_same_request(
        "start_daemon",
        &IpvsMessage::new(
            IpvsCommand::NewDaemon,
            vec![IpvsAttribute::Daemon(daemon.to_attributes())],
        ),
    );
}

/// ipvsadm sends the whole service nest (empty scheduler) with real server
/// commands; we send only the identifying attributes. The service is read
/// the same, and the real server nest is byte for byte ours.
fn destination_request(name: &str, command: IpvsCommand, expected: IpvsDestination) {
    let (_, parsed) = command_request(name);
    assert_eq!(parsed.command, command, "{name}");
    let [IpvsAttribute::Service(service), IpvsAttribute::Dest(dest)] = parsed.attributes.as_slice()
    else {
        panic!("{name}: expected a service and a destination nest: {parsed:?}");
    };
    assert_eq!(
        IpvsServiceKey::from_attributes(service).unwrap(),
        IpvsServiceKey::tcp(ip("10.0.0.1"), 80),
        "{name}"
    );
    let family = IpvsAddressFamily::Inet;
    assert_eq!(
        IpvsDestination::from_attributes(dest, family).unwrap(),
        expected,
        "{name}"
    );
    let ours = match command {
        IpvsCommand::DelDest => expected.key.to_attributes(),
        _ => expected.to_attributes(),
    };
    if command != IpvsCommand::DelDest {
        assert_eq!(&ours, dest, "{name}: destination nest");
    } else {
        // DEL_DEST: ipvsadm sends the full nest, the kernel reads the key.
        assert_eq!(&dest[..3], ours.as_slice(), "{name}: destination key");
    }
}

#[test]
fn typed_destinations_encode_exactly_as_ipvsadm() {
    let masq = IpvsDestination::new(ip("10.244.0.11"), 9376, IpvsForwardingMethod::Masquerade, 1);
    destination_request("add_dest_masq", IpvsCommand::NewDest, masq.clone());
    let mut edited = masq.clone();
    edited.weight = 3;
    destination_request("edit_dest", IpvsCommand::SetDest, edited);
    // ipvsadm gives direct-routing and tunnel real servers the service's
    // port (only masquerading rewrites it), whatever port the command names.
    destination_request(
        "add_dest_route_weight0",
        IpvsCommand::NewDest,
        IpvsDestination::new(ip("10.244.0.12"), 80, IpvsForwardingMethod::DirectRoute, 0),
    );
    let mut thresholds =
        IpvsDestination::new(ip("10.244.0.13"), 80, IpvsForwardingMethod::Tunnel, 5);
    thresholds.upper_threshold = 100;
    thresholds.lower_threshold = 10;
    destination_request(
        "add_dest_tunnel_thresholds",
        IpvsCommand::NewDest,
        thresholds,
    );
    let mut gue = IpvsDestination::new(ip("10.244.0.14"), 80, IpvsForwardingMethod::Tunnel, 1);
    gue.tunnel_type = IpvsTunnelType::Gue;
    gue.tunnel_port = 6080;
    destination_request("add_dest_tunnel_gue", IpvsCommand::NewDest, gue);
    destination_request(
        "add_dest_mixed_family",
        IpvsCommand::NewDest,
        IpvsDestination::new(ip("2001:db8::14"), 80, IpvsForwardingMethod::Tunnel, 1),
    );
    let (_, parsed) = command_request("delete_dest");
    let IpvsAttribute::Dest(dest) = &parsed.attributes[1] else {
        panic!("{parsed:?}")
    };
    assert_eq!(
        IpvsDestination::from_attributes(dest, IpvsAddressFamily::Inet)
            .unwrap()
            .key,
        IpvsDestinationKey {
            address: ip("10.244.0.11"),
            port: 9376
        }
    );
}

/// The kernel's messages of a capture, parsed.
fn kernel_messages(name: &str) -> Vec<NetlinkMessage<GenlMessage<IpvsMessage>>> {
    capture(name)
        .messages
        .iter()
        .filter(|(sent, _)| !sent)
        .map(|(_, bytes)| NetlinkMessage::deserialize(bytes).unwrap())
        .collect()
}

fn kernel_ipvs_messages(name: &str) -> Vec<IpvsMessage> {
    kernel_messages(name)
        .into_iter()
        .filter_map(|m| match m.payload {
            NetlinkPayload::InnerMessage(genl) => Some(genl.payload),
            _ => None,
        })
        .collect()
}

#[test]
fn kernel_replies_read_into_the_typed_model() {
    // GET_INFO, which ipvsadm sends before every command.
    let info = kernel_ipvs_messages("add_service_tcp_rr");
    assert_eq!(info[0].command, IpvsCommand::SetInfo);
    let info = netlink_ipvs::IpvsInfo::from_attributes(&info[0].attributes).unwrap();
    assert_eq!(info.version, 0x010201);
    assert_eq!(info.connection_table_size, 4096);

    // GET_CONFIG.
    let config = kernel_ipvs_messages("get_timeouts");
    let config = config
        .iter()
        .find(|m| m.command == IpvsCommand::SetConfig)
        .unwrap();
    assert_eq!(
        IpvsTimeouts::from_attributes(&config.attributes),
        IpvsTimeouts {
            tcp: 900,
            tcp_fin: 120,
            udp: 300
        }
    );

    // The dump behind `ipvsadm -Ln`: services, then each one's real servers.
    let replies = kernel_ipvs_messages("list_table");
    let mut services = Vec::new();
    let mut destinations = Vec::new();
    for reply in &replies {
        for attribute in &reply.attributes {
            match attribute {
                IpvsAttribute::Service(nlas) if reply.command == IpvsCommand::NewService => {
                    let service = IpvsService::from_attributes(nlas).unwrap();
                    assert!(service.stats.is_some(), "the kernel sends counters");
                    services.push(service);
                }
                IpvsAttribute::Dest(nlas) => {
                    let family = if nlas
                        .iter()
                        .any(|a| matches!(a, netlink_ipvs::IpvsDestAttribute::AddressFamily(10)))
                    {
                        IpvsAddressFamily::Inet6
                    } else {
                        IpvsAddressFamily::Inet
                    };
                    destinations.push(IpvsDestination::from_attributes(nlas, family).unwrap().key);
                }
                _ => {}
            }
        }
    }
    let mut keys: Vec<String> = services.iter().map(|s| s.key.to_string()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "TCP 10.0.0.1:80",
            "TCP [2001:db8::1]:443",
            "UDP 10.0.0.1:53"
        ]
    );
    let persistent = services.iter().find(|s| s.scheduler == "wlc").unwrap();
    assert!(persistent.is_persistent());
    assert_eq!(persistent.timeout, 600);
    destinations.sort();
    assert_eq!(
        destinations,
        vec![
            IpvsDestinationKey {
                address: ip("10.244.0.11"),
                port: 9376
            },
            IpvsDestinationKey {
                address: ip("10.244.0.12"),
                port: 9376
            },
            IpvsDestinationKey {
                address: ip("2001:db8::11"),
                port: 8443
            },
        ]
    );

    // The daemon dump.
    let daemons = kernel_ipvs_messages("list_daemons");
    let daemon = daemons
        .iter()
        .flat_map(|m| &m.attributes)
        .find_map(|a| match a {
            IpvsAttribute::Daemon(nlas) => {
                Some(netlink_ipvs::IpvsDaemon::from_attributes(nlas).unwrap())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(daemon.state, netlink_ipvs::IpvsDaemonState::Backup);
    assert_eq!(daemon.interface, "lo");
    assert_eq!(daemon.sync_id, 7);
}

#[test]
fn kernel_errors_carry_the_errno_ipvsadm_saw() {
    for (name, errno) in [
        ("error_duplicate_service", 17),
        ("error_missing_service", 3),
        ("error_missing_dest", 2),
        ("error_unknown_scheduler", 2),
    ] {
        let codes: Vec<i32> = kernel_messages(name)
            .into_iter()
            .filter_map(|m| match m.payload {
                NetlinkPayload::Error(e) => e.code.map(|c| c.get()),
                _ => None,
            })
            .collect();
        assert_eq!(codes, vec![-errno], "{name}");
    }
}

/// The table reader's direct decoding gives, on every real server the
/// kernel sent in the captures, exactly what the typed model gives.
#[test]
fn real_servers_decoded_directly_equal_the_typed_model() {
    let mut compared = 0;
    for capture in all_captures() {
        for (_, bytes) in capture.messages.iter().filter(|(sent, _)| !sent) {
            let Ok(message) = NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(bytes) else {
                continue;
            };
            let NetlinkPayload::InnerMessage(genl) = message.payload else {
                continue;
            };
            if genl.payload.command != IpvsCommand::NewDest {
                continue;
            }
            let typed: Vec<&Vec<netlink_ipvs::IpvsDestAttribute>> = genl
                .payload
                .attributes
                .iter()
                .filter_map(|attribute| match attribute {
                    IpvsAttribute::Dest(nlas) => Some(nlas),
                    _ => None,
                })
                .collect();
            let raw: Vec<&[u8]> = netlink_packet_core::NlasIterator::new(&bytes[20..])
                .map(|nla| nla.unwrap())
                .filter(|nla| nla.kind() & netlink_packet_core::NLA_TYPE_MASK == 2)
                .map(|nla| {
                    let length = nla.value_length();
                    &nla.into_inner()[4..4 + length]
                })
                .collect();
            assert_eq!(typed.len(), raw.len(), "{}", capture.name);
            for (typed, raw) in typed.into_iter().zip(raw) {
                for family in [IpvsAddressFamily::Inet, IpvsAddressFamily::Inet6] {
                    let expected = IpvsDestination::from_attributes(typed, family);
                    let direct = IpvsDestination::decode_nest(raw, family, IpvsCounters::Keep);
                    match (expected, direct) {
                        (Ok(mut expected), Ok(direct)) => {
                            assert_eq!(direct, expected, "{}", capture.name);
                            assert!(expected.stats.is_some(), "{}", capture.name);
                            // Without counters: the same, counters empty.
                            expected.stats = None;
                            let skipped =
                                IpvsDestination::decode_nest(raw, family, IpvsCounters::Skip);
                            assert_eq!(skipped.ok(), Some(expected), "{}", capture.name);
                        }
                        (Err(_), Err(_)) => {}
                        (expected, direct) => {
                            panic!("{}: {expected:?} vs {direct:?}", capture.name)
                        }
                    }
                    compared += 1;
                }
            }
        }
    }
    assert!(compared >= 6, "only {compared} real servers compared");
}
