//! The ctnetlink messages the cleanup sends and reads (pure, no I/O):
//! a dump of one family's entries (`conntrack -L -f ipv4`), the delete of
//! one entry by its original tuple (`conntrack -D -p udp -s .. -d ..
//! --sport .. --dport ..`), and the walk over the kernel's replies.
//!
//! The messages are rust-netlink's `netlink-packet-netfilter` (its
//! `conntrack` module). It has no typed `CTA_ZONE`: a zone read from a
//! dump is kept as its raw value and sent back as that attribute, encoded
//! here (`CTA_ZONE`, 18, a big-endian u16).

use std::net::IpAddr;

use netlink_ipvs::IpvsProtocol;
use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};

use crate::model::conntrack::ConntrackEntry;
use crate::model::netfilter::NetfilterFamily;

/// `CTA_ZONE` (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
const CTA_ZONE: u16 = 18;
/// `NFNL_SUBSYS_CTNETLINK`: the high byte of a ctnetlink message's type.
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
/// `NLMSG_MIN_TYPE`: types below are netlink's own (noop, error, done,
/// overrun).
const NLMSG_MIN_TYPE: u16 = 0x10;
/// `NFNETLINK_V0`.
const NFNETLINK_V0: u8 = 0;

fn proto_family(family: NetfilterFamily) -> NetfilterProtoFamily {
    match family {
        NetfilterFamily::Ipv4 => NetfilterProtoFamily::IPv4,
        NetfilterFamily::Ipv6 => NetfilterProtoFamily::IPv6,
    }
}

fn serialize(flags: u16, sequence: u32, message: NetfilterMessage) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = sequence;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
    packet.finalize();
    let mut buffer = vec![0; packet.buffer_len()];
    packet.serialize(&mut buffer);
    buffer
}

/// `IPCTNL_MSG_CT_GET` with `NLM_F_DUMP` for every entry of `family`
/// (the kernel filters the dump by the nfgenmsg family).
pub fn dump_request(family: NetfilterFamily, sequence: u32) -> Vec<u8> {
    serialize(
        NLM_F_REQUEST | NLM_F_DUMP,
        sequence,
        NetfilterMessage::new(
            NetfilterHeader::new(proto_family(family), NFNETLINK_V0, 0),
            ConntrackMessage::Get(vec![]),
        ),
    )
}

/// `IPCTNL_MSG_CT_GET_STATS`: the global entry count (like
/// `conntrack -C`); asking loads `nf_conntrack_netlink` and so
/// `nf_conntrack`, whose sysctls exist only then.
const IPCTNL_MSG_CT_GET_STATS: u8 = 5;

/// `IPCTNL_MSG_CT_GET_STATS`, acknowledged.
pub fn stats_request(sequence: u32) -> Vec<u8> {
    serialize(
        NLM_F_REQUEST | NLM_F_ACK,
        sequence,
        NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, NFNETLINK_V0, 0),
            ConntrackMessage::Other {
                message_type: IPCTNL_MSG_CT_GET_STATS,
                attributes: vec![],
            },
        ),
    )
}

fn protocol_number(protocol: IpvsProtocol) -> Protocol {
    // Every protocol the agent's virtual servers use fits in a byte.
    Protocol::from(u16::from(protocol) as u8)
}

/// `IPCTNL_MSG_CT_DELETE` of `entry`, named by its original tuple (and
/// its zone), acknowledged.
pub fn delete_request(entry: &ConntrackEntry, sequence: u32) -> Vec<u8> {
    let family = match entry.source {
        IpAddr::V4(_) => NetfilterFamily::Ipv4,
        IpAddr::V6(_) => NetfilterFamily::Ipv6,
    };
    let mut attributes = vec![ConntrackAttribute::CtaTupleOrig(vec![
        Tuple::Ip(vec![
            IPTuple::SourceAddress(entry.source),
            IPTuple::DestinationAddress(entry.destination),
        ]),
        Tuple::Proto(vec![
            ProtoTuple::Protocol(protocol_number(entry.protocol)),
            ProtoTuple::SourcePort(entry.source_port),
            ProtoTuple::DestinationPort(entry.destination_port),
        ]),
    ])];
    if let Some(zone) = entry.zone {
        attributes.push(ConntrackAttribute::Other(DefaultNla::new(
            CTA_ZONE,
            zone.to_be_bytes().to_vec(),
        )));
    }
    serialize(
        NLM_F_REQUEST | NLM_F_ACK,
        sequence,
        NetfilterMessage::new(
            NetfilterHeader::new(proto_family(family), NFNETLINK_V0, 0),
            ConntrackMessage::Delete(attributes),
        ),
    )
}

#[derive(Debug, Default)]
struct Endpoints {
    source: Option<IpAddr>,
    destination: Option<IpAddr>,
    protocol: Option<u8>,
    source_port: Option<u16>,
    destination_port: Option<u16>,
}

fn endpoints(tuples: &[Tuple]) -> Endpoints {
    let mut found = Endpoints::default();
    for tuple in tuples {
        match tuple {
            Tuple::Ip(addresses) => {
                for address in addresses {
                    match address {
                        IPTuple::SourceAddress(ip) => found.source = Some(*ip),
                        IPTuple::DestinationAddress(ip) => found.destination = Some(*ip),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(fields) => {
                for field in fields {
                    match field {
                        ProtoTuple::Protocol(protocol) => {
                            found.protocol = Some(u8::from(*protocol))
                        }
                        ProtoTuple::SourcePort(port) => found.source_port = Some(*port),
                        ProtoTuple::DestinationPort(port) => found.destination_port = Some(*port),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// The entry a dump message describes; `None` for an entry without ports
/// (ICMP and the like) or one missing a tuple.
pub fn decode_entry(attributes: &[ConntrackAttribute]) -> Option<ConntrackEntry> {
    let mut original = None;
    let mut reply = None;
    let mut zone = None;
    for attribute in attributes {
        match attribute {
            ConntrackAttribute::CtaTupleOrig(tuples) => original = Some(endpoints(tuples)),
            ConntrackAttribute::CtaTupleReply(tuples) => reply = Some(endpoints(tuples)),
            ConntrackAttribute::Other(nla) if nla.kind() == CTA_ZONE => {
                let mut bytes = vec![0u8; nla.value_len()];
                nla.emit_value(&mut bytes);
                if let [high, low, ..] = bytes[..] {
                    zone = Some(u16::from_be_bytes([high, low]));
                }
            }
            _ => {}
        }
    }
    let (original, reply) = (original?, reply?);
    Some(ConntrackEntry {
        protocol: IpvsProtocol::from(u16::from(original.protocol?)),
        source: original.source?,
        destination: original.destination?,
        source_port: original.source_port?,
        destination_port: original.destination_port?,
        reply_source: reply.source?,
        reply_source_port: reply.source_port?,
        zone,
    })
}

/// What one datagram of replies held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Datagram {
    /// The entries it described.
    pub entries: Vec<ConntrackEntry>,
    /// Messages that could not be decoded, or entries without ports.
    pub skipped: usize,
    /// `Some(0)`: done (or acknowledged); `Some(errno)`: refused; `None`:
    /// more to come.
    pub end: Option<i32>,
}

/// Walks one datagram of ctnetlink replies; a message that does not
/// decode is skipped and counted, never fatal (it is not the agent's to
/// delete). `Err` only when the datagram's own framing is broken.
pub fn parse_datagram(bytes: &[u8]) -> Result<Datagram, String> {
    let mut datagram = Datagram::default();
    let mut at = 0;
    while at + 16 <= bytes.len() {
        let length =
            u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        if length < 16 || at + length > bytes.len() {
            return Err(format!(
                "netlink message of length {length} at offset {at} of {}",
                bytes.len()
            ));
        }
        // Only ctnetlink messages (and the netlink control messages) go to
        // the decoder: netlink-packet-netfilter 0.4's nf_tables decoder
        // panics on some malformed attributes (found by the fuzz target
        // conntrack_reply), and a conntrack dump holds none of them.
        let kind = u16::from_ne_bytes([bytes[at + 4], bytes[at + 5]]);
        if kind >> 8 != NFNL_SUBSYS_CTNETLINK && kind >= NLMSG_MIN_TYPE {
            datagram.skipped += 1;
            at += (length + 3) & !3;
            continue;
        }
        match NetlinkMessage::<NetfilterMessage>::deserialize(&bytes[at..at + length]) {
            Ok(message) => match message.payload {
                NetlinkPayload::Done(_) => datagram.end = Some(0),
                NetlinkPayload::Error(error) => {
                    datagram.end = Some(
                        error
                            .code
                            .map(|code| code.get().saturating_neg())
                            .unwrap_or(0),
                    );
                }
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner: NetfilterMessageInner::Conntrack(ConntrackMessage::New(attributes)),
                    ..
                }) => match decode_entry(&attributes) {
                    Some(entry) => datagram.entries.push(entry),
                    None => datagram.skipped += 1,
                },
                _ => datagram.skipped += 1,
            },
            Err(_) => datagram.skipped += 1,
        }
        at += (length + 3) & !3;
    }
    Ok(datagram)
}
