//! Byte-exact tests of the ctnetlink requests and the reply walk.
//!
//! No capture tool (conntrack, tcpdump) is installed on the project's
//! machines, so the bytes are written from the kernel's layout
//! (`struct nlmsghdr`, `struct nfgenmsg`, the `CTA_*` attributes of
//! include/uapi/linux/netfilter/nfnetlink_conntrack.h, nested attributes
//! with `NLA_F_NESTED`, ports big-endian) and agree with the nlmon
//! capture of `conntrack -G -p tcp ...` in netlink-packet-netfilter's own
//! tests (the same `CTA_TUPLE_ORIG` encoding).

use std::net::IpAddr;

use netlink_ipvs::IpvsProtocol;

use super::message::{
    decode_entry, delete_request, dump_request, parse_datagram, stats_request, Datagram,
};
use crate::model::conntrack::ConntrackEntry;
use crate::model::netfilter::NetfilterFamily;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn entry() -> ConntrackEntry {
    ConntrackEntry {
        protocol: IpvsProtocol::Udp,
        source: ip("10.244.1.14"),
        destination: ip("10.96.0.53"),
        source_port: 40000,
        destination_port: 53,
        reply_source: ip("10.244.0.11"),
        reply_source_port: 5353,
        zone: None,
    }
}

/// `CTA_TUPLE_ORIG` of [`entry`]: udp 10.244.1.14:40000 -> 10.96.0.53:53.
const ORIGINAL_TUPLE: [u8; 52] = [
    0x34, 0x00, 0x01, 0x80, // CTA_TUPLE_ORIG, nested, 52 bytes
    0x14, 0x00, 0x01, 0x80, // CTA_TUPLE_IP, nested, 20 bytes
    0x08, 0x00, 0x01, 0x00, 10, 244, 1, 14, // CTA_IP_V4_SRC
    0x08, 0x00, 0x02, 0x00, 10, 96, 0, 53, // CTA_IP_V4_DST
    0x1c, 0x00, 0x02, 0x80, // CTA_TUPLE_PROTO, nested, 28 bytes
    0x05, 0x00, 0x01, 0x00, 17, 0, 0, 0, // CTA_PROTO_NUM udp, padded
    0x06, 0x00, 0x02, 0x00, 0x9c, 0x40, 0, 0, // CTA_PROTO_SRC_PORT 40000
    0x06, 0x00, 0x03, 0x00, 0x00, 0x35, 0, 0, // CTA_PROTO_DST_PORT 53
];

#[test]
fn dump_request_is_a_get_dump_of_the_family() {
    // conntrack -L -f ipv4: IPCTNL_MSG_CT_GET (subsystem 1, message 1),
    // NLM_F_REQUEST | NLM_F_DUMP, nfgenmsg AF_INET version 0.
    let expected: Vec<u8> = vec![
        20, 0, 0, 0, // length
        0x01, 0x01, // (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
        0x01, 0x03, // NLM_F_REQUEST | NLM_F_DUMP
        9, 0, 0, 0, // sequence
        0, 0, 0, 0, // port id
        2, 0, 0, 0, // nfgenmsg: AF_INET, NFNETLINK_V0, res_id 0
    ];
    assert_eq!(dump_request(NetfilterFamily::Ipv4, 9), expected);
    let v6 = dump_request(NetfilterFamily::Ipv6, 9);
    assert_eq!(v6[16], 10, "AF_INET6");
}

#[test]
fn delete_request_names_the_original_tuple() {
    // conntrack -D -p udp -s 10.244.1.14 -d 10.96.0.53 --sport 40000 --dport 53
    let mut expected: Vec<u8> = vec![
        72, 0, 0, 0, // length
        0x02, 0x01, // (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
        0x05, 0x00, // NLM_F_REQUEST | NLM_F_ACK
        7, 0, 0, 0, // sequence
        0, 0, 0, 0, // port id
        2, 0, 0, 0, // nfgenmsg: AF_INET
    ];
    expected.extend_from_slice(&ORIGINAL_TUPLE);
    assert_eq!(delete_request(&entry(), 7), expected);
}

#[test]
fn delete_request_carries_the_zone_by_hand() {
    // ... --zone 5: CTA_ZONE (18), a big-endian u16, padded.
    let zoned = ConntrackEntry {
        zone: Some(5),
        ..entry()
    };
    let bytes = delete_request(&zoned, 7);
    assert_eq!(bytes[0], 80);
    assert_eq!(&bytes[20..72], &ORIGINAL_TUPLE);
    assert_eq!(&bytes[72..], &[0x06, 0x00, 0x12, 0x00, 0x00, 0x05, 0, 0]);
}

fn header(length: usize, kind: u16, flags: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&(length as u32).to_ne_bytes());
    bytes.extend_from_slice(&kind.to_ne_bytes());
    bytes.extend_from_slice(&flags.to_ne_bytes());
    bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    bytes
}

/// What the kernel sends for `udp src=10.244.1.14 dst=10.96.0.53
/// sport=40000 dport=53 src=10.244.0.11 dst=10.244.1.14 sport=5353
/// dport=40000`, status 0x18a, zone 5 (the order ctnetlink_fill_info
/// uses: tuples, status, timeout, ..., zone).
fn new_message() -> Vec<u8> {
    let mut body = vec![2, 0, 0, 0];
    body.extend_from_slice(&ORIGINAL_TUPLE);
    body.extend_from_slice(&[
        0x34, 0x00, 0x02, 0x80, // CTA_TUPLE_REPLY
        0x14, 0x00, 0x01, 0x80, //
        0x08, 0x00, 0x01, 0x00, 10, 244, 0, 11, //
        0x08, 0x00, 0x02, 0x00, 10, 244, 1, 14, //
        0x1c, 0x00, 0x02, 0x80, //
        0x05, 0x00, 0x01, 0x00, 17, 0, 0, 0, //
        0x06, 0x00, 0x02, 0x00, 0x14, 0xe9, 0, 0, // 5353
        0x06, 0x00, 0x03, 0x00, 0x9c, 0x40, 0, 0, // 40000
        0x08, 0x00, 0x03, 0x00, 0, 0, 0x01, 0x8a, // CTA_STATUS
        0x08, 0x00, 0x07, 0x00, 0, 0, 0, 29, // CTA_TIMEOUT
        0x06, 0x00, 0x12, 0x00, 0x00, 0x05, 0, 0, // CTA_ZONE 5
    ]);
    let mut message = header(16 + body.len(), 0x0100, 0x0002);
    message.extend(body);
    message
}

#[test]
fn dump_replies_decode_to_entries_then_done() {
    let mut datagram = new_message();
    let mut done = header(20, 3, 0x0002);
    done.extend_from_slice(&[0, 0, 0, 0]);
    datagram.extend(done);
    assert_eq!(
        parse_datagram(&datagram).unwrap(),
        Datagram {
            entries: vec![ConntrackEntry {
                zone: Some(5),
                ..entry()
            }],
            skipped: 0,
            end: Some(0),
        }
    );
}

#[test]
fn errors_and_strangers_are_told_apart() {
    // NLMSG_ERROR -ENOENT (the answer to deleting an entry that is gone),
    // with the request's header echoed.
    let mut error = header(36, 2, 0);
    error.extend_from_slice(&(-2i32).to_ne_bytes());
    error.extend_from_slice(&header(16, 0x0102, 5));
    assert_eq!(parse_datagram(&error).unwrap().end, Some(2));
    // An ACK.
    let mut ack = header(36, 2, 0);
    ack.extend_from_slice(&0i32.to_ne_bytes());
    ack.extend_from_slice(&header(16, 0x0102, 5));
    assert_eq!(parse_datagram(&ack).unwrap().end, Some(0));
    // An entry without a reply tuple is skipped, not fatal; so is garbage
    // inside a well-framed message.
    let mut lone = header(16 + 4 + 52, 0x0100, 2);
    lone.extend_from_slice(&[2, 0, 0, 0]);
    lone.extend_from_slice(&ORIGINAL_TUPLE);
    let mut garbage = header(24, 0x0100, 2);
    garbage.extend_from_slice(&[2, 0, 0, 0, 0xff, 0xff, 0x01, 0x80]);
    lone.extend(garbage);
    let walked = parse_datagram(&lone).unwrap();
    assert_eq!(
        (walked.entries.len(), walked.skipped, walked.end),
        (0, 2, None)
    );
    // Broken framing is an error naming the offset.
    let broken = parse_datagram(&[200, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
    assert!(broken.contains("offset 0"), "{broken}");
}

#[test]
fn entries_without_ports_are_not_decoded() {
    assert_eq!(decode_entry(&[]), None);
}

#[test]
fn stats_request_is_a_bare_get_stats() {
    // conntrack -C: IPCTNL_MSG_CT_GET_STATS (5), AF_UNSPEC.
    let expected: Vec<u8> = vec![
        20, 0, 0, 0, 0x05, 0x01, 0x05, 0x00, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(stats_request(3), expected);
}

/// Found by the fuzz target conntrack_reply: an error message whose code
/// is i32::MIN overflowed the negation (a panic in debug builds).
#[test]
fn an_error_code_of_i32_min_is_no_overflow() {
    let crash = [
        0x2c, 0x00, 0x00, 0x00, 0x02, 0x00, 0x0a, 0x06, 0x00, 0x80, 0x14, 0x00, 0x05, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x80,
        0x02, 0x80, 0x01, 0x88, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x01,
        0x00, 0x00, 0x2b, 0x92, 0x10, 0x00, 0x00, 0x00, 0xfc,
    ];
    assert_eq!(parse_datagram(&crash).unwrap().end, Some(i32::MAX));
}

/// Found by the fuzz target conntrack_reply: an nf_tables message (type
/// 0x0a0a, NFT_MSG_NEWSET) in a ctnetlink reply made
/// netlink-packet-netfilter's decoder panic; it is skipped unread.
#[test]
fn a_message_of_another_subsystem_is_skipped_unread() {
    let crash = [
        0x2b, 0x00, 0x00, 0x00, 0x0a, 0x0a, 0x60, 0x33, 0x00, 0x1c, 0x10, 0xf4, 0x00, 0x02, 0x84,
        0x00, 0xff, 0xff, 0xff, 0x24, 0x04, 0x00, 0x24, 0x00, 0x04, 0x00, 0x00, 0x00, 0x06, 0x00,
        0x03, 0x3d, 0x1c, 0x00, 0x02, 0x80, 0x05, 0x00, 0x11, 0x00, 0x00, 0x00, 0x01, 0x60, 0x02,
        0x00, 0x0a, 0x00, 0x02, 0x1c, 0x08, 0x00, 0xff, 0x7f, 0xfa, 0xfe, 0xca, 0x00, 0xee, 0x00,
        0xff, 0xf6, 0x35, 0x00, 0x00, 0x00,
    ];
    let datagram = parse_datagram(&crash[..0x2b]).unwrap();
    assert_eq!((datagram.skipped, datagram.end), (1, None));
    assert!(datagram.entries.is_empty());
}
