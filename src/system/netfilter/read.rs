//! Reading the agent's tables back from the kernel over nfnetlink
//! (`NETLINK_NETFILTER`, the nf_tables subsystem): the table, its sets
//! with their key types, its chains, its rules (as the kernel's
//! expression bytes, to tell whether anyone changed them) and the
//! elements of its sets.
//!
//! Why not `nft -j list table`: in the guest, nft 1.0.6 took over four
//! minutes to list a table with 40,000 set elements (its listing cost
//! grows much faster than the element count), while the kernel's dump of
//! the same elements is one pass. Writing goes through `nft -f` (one
//! transaction, kube-proxy's nftables way), small element changes
//! through [`write`](super::write); reading is this module.
//!
//! Blocking: run it with `spawn_blocking`. [`decode_elements`] and the
//! message walk are pure and tested with bytes the kernel sends.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_ipvs::IpvsProtocol;
use netlink_packet_core::{NLA_TYPE_MASK, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_sys::Socket;

use super::NetfilterError;
use crate::model::netfilter::{
    ElementKey, ElementShape, NetfilterFamily, NetfilterSet, SetElement, SetElements,
    NETFILTER_TABLE,
};
use crate::system::errno::ENOENT;
use crate::system::nfnetlink::open_socket;

pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_GETSET: u16 = 10;
pub(super) const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
pub(super) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub(super) const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub(super) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub(super) const NFTA_LIST_ELEM: u16 = 1;
pub(super) const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
pub(super) const NFTA_DATA_VALUE: u16 = 1;
const NFT_SET_INTERVAL: u32 = 0x4;

pub(super) const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub(super) const NETLINK_HEADER: usize = 16;
const NFGEN_HEADER: usize = 4;

/// A set of the kernel's table, as declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetDeclaration {
    /// `NFTA_SET_KEY_TYPE` (nft's datatype, concatenations packed).
    pub key_type: u32,
    /// `NFTA_SET_KEY_LEN`.
    pub key_len: u32,
    /// Whether it is an interval set.
    pub interval: bool,
}

/// One family's table as the kernel holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelTable {
    /// Its sets by name (the agent's and any other).
    pub sets: BTreeMap<String, SetDeclaration>,
    /// Its chains' names.
    pub chains: BTreeSet<String>,
    /// Its rules, in order: chain and expression bytes.
    pub rules: Vec<(String, Vec<u8>)>,
    /// The elements of the agent's sets that are declared as the agent
    /// declares them.
    pub elements: SetElements,
    /// The agent's sets holding elements it cannot decode (written by
    /// someone else): flushed and filled again.
    pub undecodable: BTreeSet<NetfilterSet>,
}

pub(super) fn nfproto(family: NetfilterFamily) -> u8 {
    match family {
        NetfilterFamily::Ipv4 => 2,
        NetfilterFamily::Ipv6 => 10,
    }
}

pub(super) fn attribute(buffer: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let length = 4 + value.len();
    buffer.extend_from_slice(&(length as u16).to_ne_bytes());
    buffer.extend_from_slice(&kind.to_ne_bytes());
    buffer.extend_from_slice(value);
    while buffer.len() % 4 != 0 {
        buffer.push(0);
    }
}

pub(super) fn string_value(text: &str) -> Vec<u8> {
    let mut value = text.as_bytes().to_vec();
    value.push(0);
    value
}

/// One nf_tables request: `message` with `attributes`, a dump or not.
pub fn request(
    message: u16,
    family: NetfilterFamily,
    dump: bool,
    sequence: u32,
    attributes: &[(u16, &[u8])],
) -> Vec<u8> {
    let mut buffer = vec![0u8; NETLINK_HEADER];
    buffer.extend_from_slice(&[nfproto(family), 0, 0, 0]);
    for (kind, value) in attributes {
        attribute(&mut buffer, *kind, value);
    }
    let length = buffer.len() as u32;
    let flags = NLM_F_REQUEST | NLM_F_ACK | if dump { NLM_F_DUMP } else { 0 };
    buffer[0..4].copy_from_slice(&length.to_ne_bytes());
    buffer[4..6].copy_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | message).to_ne_bytes());
    buffer[6..8].copy_from_slice(&flags.to_ne_bytes());
    buffer[8..12].copy_from_slice(&sequence.to_ne_bytes());
    buffer
}

/// The nf_tables messages of one datagram: (message type, attributes),
/// and whether the reply ended (done, or an error: its errno).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Datagram {
    /// nf_tables messages (type without the subsystem, attribute bytes).
    pub messages: Vec<(u16, Vec<u8>)>,
    /// `Some(0)`: done; `Some(errno)`: failed; `None`: more to come.
    pub end: Option<i32>,
}

/// Walks one datagram of replies.
pub fn parse_datagram(bytes: &[u8]) -> Result<Datagram, NetfilterError> {
    let mut datagram = Datagram::default();
    let mut at = 0;
    while at + NETLINK_HEADER <= bytes.len() {
        let length = u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if length < NETLINK_HEADER || at + length > bytes.len() {
            return Err(NetfilterError::Decode(format!(
                "netlink message of length {length} at offset {at} of {}",
                bytes.len()
            )));
        }
        let kind = u16::from_ne_bytes(bytes[at + 4..at + 6].try_into().expect("2 bytes"));
        let payload = &bytes[at + NETLINK_HEADER..at + length];
        match kind {
            NLMSG_DONE => datagram.end = Some(0),
            NLMSG_ERROR => {
                let code = payload
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
                    .unwrap_or(0);
                if code != 0 {
                    datagram.end = Some(code.saturating_neg());
                } else if datagram.end.is_none() {
                    // The ACK of a request that was not a dump.
                    datagram.end = Some(0);
                }
            }
            _ if kind >> 8 == NFNL_SUBSYS_NFTABLES && payload.len() >= NFGEN_HEADER => {
                datagram
                    .messages
                    .push((kind & 0xff, payload[NFGEN_HEADER..].to_vec()));
            }
            _ => {}
        }
        at += (length + 3) & !3;
    }
    Ok(datagram)
}

/// The attributes in `bytes`: (type without the nested and byte-order
/// flags, value); stops at the first malformed one.
fn attributes(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let header = bytes.get(at..at + 4)?;
        let length = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let kind = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
        let value = bytes.get(at + 4..at + length.max(4))?;
        at += (length.max(4) + 3) & !3;
        Some((kind, value))
    })
}

fn find(bytes: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(bytes).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

fn text(value: &[u8]) -> String {
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

fn be_u32(value: &[u8]) -> Option<u32> {
    value
        .get(0..4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
}

/// An address of `family` at the start of `bytes`.
fn address(family: NetfilterFamily, bytes: &[u8]) -> Option<IpAddr> {
    match family {
        NetfilterFamily::Ipv4 => {
            let octets: [u8; 4] = bytes.get(0..4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        NetfilterFamily::Ipv6 => {
            let octets: [u8; 16] = bytes.get(0..16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
    }
}

fn protocol(number: u8) -> IpvsProtocol {
    match number {
        6 => IpvsProtocol::Tcp,
        17 => IpvsProtocol::Udp,
        132 => IpvsProtocol::Sctp,
        other => IpvsProtocol::Other(u16::from(other)),
    }
}

/// Decodes one element's key (and, in interval sets, the end of its
/// range) by the set's shape: concatenated fields each take a multiple of
/// four bytes, as nf_tables' registers do. `None`: not an element the
/// agent writes.
pub fn decode_element(
    family: NetfilterFamily,
    set: NetfilterSet,
    key: &[u8],
    key_end: Option<&[u8]>,
) -> Option<ElementKey> {
    let address_len = match family {
        NetfilterFamily::Ipv4 => 4,
        NetfilterFamily::Ipv6 => 16,
    };
    let port_at = |at: usize| -> Option<u16> {
        key.get(at..at + 2)
            .map(|b| u16::from_be_bytes(b.try_into().expect("2 bytes")))
    };
    match set.shape() {
        ElementShape::Service => {
            (key.len() == address_len + 8).then_some(())?;
            Some(ElementKey::Service {
                address: address(family, key)?,
                protocol: protocol(key[address_len]),
                port: port_at(address_len + 4)?,
            })
        }
        ElementShape::ServiceSource => {
            (key.len() == 2 * address_len + 8).then_some(())?;
            let end = key_end.unwrap_or(key);
            (end.len() == key.len() && end[..address_len + 8] == key[..address_len + 8])
                .then_some(())?;
            Some(ElementKey::ServiceSource {
                address: address(family, key)?,
                protocol: protocol(key[address_len]),
                port: port_at(address_len + 4)?,
                first: address(family, &key[address_len + 8..])?,
                last: address(family, &end[address_len + 8..])?,
            })
        }
        ElementShape::ProtocolPort => {
            (key.len() == 8).then_some(())?;
            Some(ElementKey::ProtocolPort {
                protocol: protocol(key[0]),
                port: port_at(4)?,
            })
        }
        ElementShape::Port => {
            (key.len() == 2).then_some(())?;
            Some(ElementKey::Port(port_at(0)?))
        }
        ElementShape::AddressPair => {
            (key.len() == 2 * address_len).then_some(())?;
            let first = address(family, key)?;
            (address(family, &key[address_len..])? == first)
                .then_some(ElementKey::AddressPair(first))
        }
        ElementShape::Address => {
            (key.len() == address_len).then_some(())?;
            Some(ElementKey::Address(address(family, key)?))
        }
    }
}

/// Decodes the elements of one `NEWSETELEM` message's attributes: the
/// keys, and whether some could not be decoded.
pub fn decode_elements(
    family: NetfilterFamily,
    set: NetfilterSet,
    attributes_bytes: &[u8],
    into: &mut SetElements,
) -> bool {
    let mut undecodable = false;
    let Some(list) = find(attributes_bytes, NFTA_SET_ELEM_LIST_ELEMENTS) else {
        return false;
    };
    for (kind, element) in attributes(list) {
        if kind != NFTA_LIST_ELEM {
            continue;
        }
        let value = |kind| find(element, kind).and_then(|data| find(data, NFTA_DATA_VALUE));
        let decoded = value(NFTA_SET_ELEM_KEY)
            .and_then(|key| decode_element(family, set, key, value(NFTA_SET_ELEM_KEY_END)));
        match decoded {
            Some(key) => {
                into.insert(SetElement { family, set, key });
            }
            None => undecodable = true,
        }
    }
    undecodable
}

/// A reply: its nf_tables messages, or the errno the kernel refused the
/// request with.
type Reply = Result<Vec<(u16, Vec<u8>)>, i32>;

/// A blocking nfnetlink socket for reading.
#[derive(Debug)]
pub struct TableReader {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl TableReader {
    /// Opens the socket.
    pub fn new() -> Result<Self, NetfilterError> {
        Ok(Self {
            socket: open_socket().map_err(|error| NetfilterError::Netlink {
                what: "opening an nfnetlink socket".into(),
                error,
            })?,
            sequence: 1,
            buffer: vec![0; 1 << 20],
        })
    }

    /// Sends one request and collects its reply messages; `Err(errno)`
    /// when the kernel refused it.
    fn exchange(
        &mut self,
        message: u16,
        family: NetfilterFamily,
        dump: bool,
        attributes: &[(u16, &[u8])],
        what: &str,
    ) -> Result<Reply, NetfilterError> {
        self.sequence = self.sequence.wrapping_add(1);
        let bytes = request(message, family, dump, self.sequence, attributes);
        let io_error = |error| NetfilterError::Netlink {
            what: what.to_owned(),
            error,
        };
        self.socket.send(&bytes, 0).map_err(io_error)?;
        let mut messages = Vec::new();
        loop {
            let size = self
                .socket
                .recv(&mut &mut self.buffer[..], 0)
                .map_err(io_error)?;
            let datagram = parse_datagram(&self.buffer[..size])?;
            messages.extend(datagram.messages);
            match datagram.end {
                Some(0) => return Ok(Ok(messages)),
                Some(errno) => return Ok(Err(errno)),
                None => {}
            }
        }
    }

    /// Reads `family`'s table of the agent (its set elements only with
    /// `elements`); `None` when there is none.
    pub fn read(
        &mut self,
        family: NetfilterFamily,
        elements: bool,
    ) -> Result<Option<KernelTable>, NetfilterError> {
        let table_name = string_value(NETFILTER_TABLE);
        let table = format!("{} {NETFILTER_TABLE}", family.nft_name());
        let refused = |what: &str, errno: i32| NetfilterError::Refused {
            what: format!("{what} of table {table}"),
            errno,
        };
        match self.exchange(
            NFT_MSG_GETTABLE,
            family,
            false,
            &[(NFTA_TABLE_NAME, &table_name)],
            "reading the table",
        )? {
            Ok(_) => {}
            Err(errno) if errno == ENOENT => return Ok(None),
            Err(errno) => return Err(refused("reading", errno)),
        }
        let mut kernel = KernelTable::default();
        let ours = |attributes: &[u8], kind| {
            find(attributes, kind).is_some_and(|value| text(value) == NETFILTER_TABLE)
        };
        let sets = self
            .exchange(
                NFT_MSG_GETSET,
                family,
                true,
                &[(NFTA_SET_TABLE, &table_name)],
                "listing sets",
            )?
            .map_err(|errno| refused("listing the sets", errno))?;
        for (kind, attributes) in sets {
            if kind != NFT_MSG_NEWSET || !ours(&attributes, NFTA_SET_TABLE) {
                continue;
            }
            let Some(name) = find(&attributes, NFTA_SET_NAME).map(text) else {
                continue;
            };
            let number = |kind| find(&attributes, kind).and_then(be_u32).unwrap_or(0);
            kernel.sets.insert(
                name,
                SetDeclaration {
                    key_type: number(NFTA_SET_KEY_TYPE),
                    key_len: number(NFTA_SET_KEY_LEN),
                    interval: number(NFTA_SET_FLAGS) & NFT_SET_INTERVAL != 0,
                },
            );
        }
        let chains = self
            .exchange(
                NFT_MSG_GETCHAIN,
                family,
                true,
                &[(NFTA_CHAIN_TABLE, &table_name)],
                "listing chains",
            )?
            .map_err(|errno| refused("listing the chains", errno))?;
        kernel.chains = chains
            .into_iter()
            .filter(|(kind, attributes)| {
                *kind == NFT_MSG_NEWCHAIN && ours(attributes, NFTA_CHAIN_TABLE)
            })
            .filter_map(|(_, attributes)| find(&attributes, NFTA_CHAIN_NAME).map(text))
            .collect();
        let rules = self
            .exchange(
                NFT_MSG_GETRULE,
                family,
                true,
                &[(NFTA_RULE_TABLE, &table_name)],
                "listing rules",
            )?
            .map_err(|errno| refused("listing the rules", errno))?;
        kernel.rules = rules
            .into_iter()
            .filter(|(kind, attributes)| {
                *kind == NFT_MSG_NEWRULE && ours(attributes, NFTA_RULE_TABLE)
            })
            .map(|(_, attributes)| {
                let chain = find(&attributes, NFTA_RULE_CHAIN)
                    .map(text)
                    .unwrap_or_default();
                let expressions = find(&attributes, NFTA_RULE_EXPRESSIONS)
                    .unwrap_or_default()
                    .to_vec();
                (chain, expressions)
            })
            .collect();
        for set in NetfilterSet::ALL.into_iter().filter(|_| elements) {
            let Some(declared) = kernel.sets.get(set.name()) else {
                continue;
            };
            let (key_type, key_len, interval) = super::script::expected_key(family, set);
            if *declared
                != (SetDeclaration {
                    key_type,
                    key_len,
                    interval,
                })
            {
                continue;
            }
            let set_name = string_value(set.name());
            let replies = self
                .exchange(
                    NFT_MSG_GETSETELEM,
                    family,
                    true,
                    &[
                        (NFTA_SET_ELEM_LIST_TABLE, &table_name),
                        (NFTA_SET_ELEM_LIST_SET, &set_name),
                    ],
                    "listing set elements",
                )?
                .map_err(|errno| {
                    refused(&format!("listing the elements of {}", set.name()), errno)
                })?;
            for (kind, attributes) in replies {
                if kind == NFT_MSG_NEWSETELEM
                    && decode_elements(family, set, &attributes, &mut kernel.elements)
                {
                    kernel.undecodable.insert(set);
                }
            }
        }
        Ok(Some(kernel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(kind: u16, inner: &[u8]) -> Vec<u8> {
        let mut buffer = Vec::new();
        attribute(&mut buffer, kind | 0x8000, inner);
        buffer
    }

    fn plain(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut buffer = Vec::new();
        attribute(&mut buffer, kind, value);
        buffer
    }

    #[test]
    fn requests_carry_the_subsystem_family_and_attributes() {
        let bytes = request(
            NFT_MSG_GETSET,
            NetfilterFamily::Ipv6,
            true,
            7,
            &[(NFTA_SET_TABLE, b"ipvs-agent\0")],
        );
        assert_eq!(bytes.len(), 16 + 4 + 4 + 12);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 36);
        assert_eq!(u16::from_ne_bytes(bytes[4..6].try_into().unwrap()), 0x0a0a);
        assert_eq!(
            u16::from_ne_bytes(bytes[6..8].try_into().unwrap()),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP
        );
        assert_eq!(bytes[16], 10, "NFPROTO_IPV6");
        assert_eq!(&bytes[24..34], b"ipvs-agent");
    }

    #[test]
    fn concatenated_keys_decode_field_by_field() {
        let v4 = NetfilterFamily::Ipv4;
        // 10.96.0.10 . tcp . 80: every field padded to four bytes.
        let key = [10, 96, 0, 10, 6, 0, 0, 0, 0, 80, 0, 0];
        assert_eq!(
            decode_element(v4, NetfilterSet::ClusterIps, &key, None),
            Some(ElementKey::Service {
                address: "10.96.0.10".parse().unwrap(),
                protocol: IpvsProtocol::Tcp,
                port: 80
            })
        );
        // 192.0.2.10 . udp . 53 . 192.168.0.0-192.168.255.255
        let start = [192, 0, 2, 10, 17, 0, 0, 0, 0, 53, 0, 0, 192, 168, 0, 0];
        let end = [192, 0, 2, 10, 17, 0, 0, 0, 0, 53, 0, 0, 192, 168, 255, 255];
        assert_eq!(
            decode_element(v4, NetfilterSet::FirewallAllow, &start, Some(&end)),
            Some(ElementKey::ServiceSource {
                address: "192.0.2.10".parse().unwrap(),
                protocol: IpvsProtocol::Udp,
                port: 53,
                first: "192.168.0.0".parse().unwrap(),
                last: "192.168.255.255".parse().unwrap(),
            })
        );
        assert_eq!(
            decode_element(
                v4,
                NetfilterSet::NodePorts,
                &[132, 0, 0, 0, 0x75, 0x30, 0, 0],
                None
            ),
            Some(ElementKey::ProtocolPort {
                protocol: IpvsProtocol::Sctp,
                port: 30000
            })
        );
        assert_eq!(
            decode_element(v4, NetfilterSet::HealthCheckPorts, &[0x76, 0x50], None),
            Some(ElementKey::Port(30288))
        );
        let pair = [10, 244, 1, 5, 10, 244, 1, 5];
        assert_eq!(
            decode_element(v4, NetfilterSet::Hairpin, &pair, None),
            Some(ElementKey::AddressPair("10.244.1.5".parse().unwrap()))
        );
        // A pair the agent never writes, and keys of the wrong size.
        assert_eq!(
            decode_element(
                v4,
                NetfilterSet::Hairpin,
                &[10, 244, 1, 5, 10, 244, 1, 6],
                None
            ),
            None
        );
        assert_eq!(
            decode_element(v4, NetfilterSet::ClusterIps, &key[..8], None),
            None
        );
        let mut v6 = vec![0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
        v6.extend_from_slice(&[6, 0, 0, 0, 1, 187, 0, 0]);
        assert_eq!(
            decode_element(NetfilterFamily::Ipv6, NetfilterSet::ExternalIps, &v6, None),
            Some(ElementKey::Service {
                address: "fd00::10".parse().unwrap(),
                protocol: IpvsProtocol::Tcp,
                port: 443
            })
        );
    }

    #[test]
    fn element_lists_decode_and_flag_strangers() {
        let key = |bytes: &[u8]| nested(NFTA_SET_ELEM_KEY, &plain(NFTA_DATA_VALUE, bytes));
        let mut list = Vec::new();
        list.extend(nested(NFTA_LIST_ELEM, &key(&[10, 96, 0, 10])));
        list.extend(nested(NFTA_LIST_ELEM, &key(&[10, 96, 0, 11])));
        let mut message = plain(NFTA_SET_ELEM_LIST_TABLE, b"ipvs-agent\0");
        message.extend(nested(NFTA_SET_ELEM_LIST_ELEMENTS, &list));
        let mut elements = SetElements::new();
        assert!(!decode_elements(
            NetfilterFamily::Ipv4,
            NetfilterSet::Vips,
            &message,
            &mut elements
        ));
        assert_eq!(elements.len(), 2);
        list.extend(nested(NFTA_LIST_ELEM, &key(&[1, 2, 3])));
        let mut message = Vec::new();
        message.extend(nested(NFTA_SET_ELEM_LIST_ELEMENTS, &list));
        assert!(decode_elements(
            NetfilterFamily::Ipv4,
            NetfilterSet::Vips,
            &message,
            &mut elements
        ));
    }

    #[test]
    fn datagrams_end_with_done_or_an_error() {
        let message = |kind: u16, payload: &[u8]| {
            let mut bytes = ((16 + payload.len()) as u32).to_ne_bytes().to_vec();
            bytes.extend_from_slice(&kind.to_ne_bytes());
            bytes.extend_from_slice(&[0; 10]);
            bytes.extend_from_slice(payload);
            while bytes.len() % 4 != 0 {
                bytes.push(0);
            }
            bytes
        };
        let mut bytes = message(
            0x0a00 | NFT_MSG_NEWSET,
            &[2, 0, 0, 0, 8, 0, 2, 0, b'a', 0, 0, 0],
        );
        bytes.extend(message(NLMSG_DONE, &[0; 4]));
        let datagram = parse_datagram(&bytes).unwrap();
        assert_eq!(datagram.end, Some(0));
        assert_eq!(
            datagram.messages,
            vec![(NFT_MSG_NEWSET, vec![8, 0, 2, 0, b'a', 0, 0, 0])]
        );
        let refused = message(NLMSG_ERROR, &(-2i32).to_ne_bytes());
        assert_eq!(parse_datagram(&refused).unwrap().end, Some(2));
        assert!(parse_datagram(&[200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    /// Found by the fuzz target nftables_reply: an error message whose
    /// code is i32::MIN overflowed the negation (a panic in debug builds).
    #[test]
    fn an_error_code_of_i32_min_is_no_overflow() {
        let crash = [
            0x24, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x52, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,
            0x11, 0x00, 0xff, 0x00, 0x00, 0x40, 0x00, 0xf5, 0x65, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x0a, 0xfe, 0x06, 0xff, 0x08, 0x00, 0x01, 0x00, 0xff, 0xff,
        ];
        // The error message alone; the whole input also has a broken one.
        assert_eq!(parse_datagram(&crash[..36]).unwrap().end, Some(i32::MAX));
        assert!(parse_datagram(&crash).is_err());
    }
}
