//! Small element changes sent to the kernel over nfnetlink, without an
//! `nft` process: one nf_tables batch (`NFNL_MSG_BATCH_BEGIN`, one
//! `NEWSETELEM` or `DELSETELEM` per set, `NFNL_MSG_BATCH_END`), which
//! the kernel commits all or none, as it does an `nft -f` script.
//!
//! Why: an incremental change that changes one element (a node-local
//! endpoint's hairpin element) cost one `nft` process, 0.11–0.17 s in the
//! guest whatever the table's size, and that was most of an endpoint
//! change's latency at 20,000 Services (issue 16, P2;
//! `integration/scripts/nft-process-cost.sh`). A first sync's bulk goes
//! the same way, in batches of [`MAX_NETLINK_ELEMENTS`] ([`parts`]). The
//! rules and the interval set's elements still go through `nft -f`
//! ([`netlink_batch`] says which changes qualify).
//!
//! [`parts`] and [`netlink_batch`] are pure and tested, the batch by
//! decoding its messages with the reader's
//! [`decode_elements`](super::read::decode_elements);
//! [`send_batch_blocking`] sends one and waits for the kernel's answer.

use std::collections::BTreeMap;

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST};

use super::read::{
    attribute, nfproto, string_value, NETLINK_HEADER, NFNL_SUBSYS_NFTABLES, NFTA_DATA_VALUE,
    NFTA_LIST_ELEM, NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_LIST_ELEMENTS, NFTA_SET_ELEM_LIST_SET,
    NFTA_SET_ELEM_LIST_TABLE, NFT_MSG_NEWSETELEM, NLMSG_ERROR,
};
use super::script::{expected_key, Transaction};
use super::NetfilterError;
use crate::model::netfilter::{
    ElementKey, NetfilterFamily, NetfilterSet, SetElement, NETFILTER_TABLE,
};
use crate::system::nfnetlink::open_socket;

const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLA_F_NESTED: u16 = 0x8000;

/// The most element changes sent without `nft`: one batch stays well
/// inside one datagram (about 40 bytes an element).
pub const MAX_NETLINK_ELEMENTS: usize = 1024;

/// An element's key as nf_tables holds it: the fields concatenated, each
/// padded to four bytes (the reader's `decode_element` in reverse), or
/// `None` for one the batch cannot carry (a protocol number above 255,
/// an address of the other family, a range).
pub fn element_key_bytes(element: &SetElement) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(40);
    let address = |bytes: &mut Vec<u8>, address: &std::net::IpAddr| -> Option<()> {
        match (element.family, address) {
            (NetfilterFamily::Ipv4, std::net::IpAddr::V4(v4)) => bytes.extend(v4.octets()),
            (NetfilterFamily::Ipv6, std::net::IpAddr::V6(v6)) => bytes.extend(v6.octets()),
            _ => return None,
        }
        Some(())
    };
    let protocol_port = |bytes: &mut Vec<u8>, protocol, port: u16| -> Option<()> {
        let number = u8::try_from(u16::from(protocol)).ok()?;
        bytes.extend([number, 0, 0, 0]);
        bytes.extend(port.to_be_bytes());
        bytes.extend([0, 0]);
        Some(())
    };
    match &element.key {
        ElementKey::Service {
            address: service,
            protocol,
            port,
        } => {
            address(&mut bytes, service)?;
            protocol_port(&mut bytes, *protocol, *port)?;
        }
        ElementKey::ServiceSource { .. } => return None,
        ElementKey::ProtocolPort { protocol, port } => protocol_port(&mut bytes, *protocol, *port)?,
        ElementKey::Port(port) => bytes.extend(port.to_be_bytes()),
        ElementKey::AddressPair(endpoint) => {
            address(&mut bytes, endpoint)?;
            address(&mut bytes, endpoint)?;
        }
        ElementKey::Address(vip) => address(&mut bytes, vip)?,
    }
    Some(bytes)
}

fn header(buffer: &mut Vec<u8>, kind: u16, flags: u16, sequence: u32, nfgen: [u8; 4]) -> usize {
    let start = buffer.len();
    buffer.extend_from_slice(&[0; NETLINK_HEADER]);
    buffer[start + 4..start + 6].copy_from_slice(&kind.to_ne_bytes());
    buffer[start + 6..start + 8].copy_from_slice(&flags.to_ne_bytes());
    buffer[start + 8..start + 12].copy_from_slice(&sequence.to_ne_bytes());
    buffer.extend_from_slice(&nfgen);
    start
}

fn finish(buffer: &mut [u8], start: usize) {
    let length = (buffer.len() - start) as u32;
    buffer[start..start + 4].copy_from_slice(&length.to_ne_bytes());
}

/// A nested attribute holding `inner`.
fn nested(buffer: &mut Vec<u8>, kind: u16, inner: &[u8]) {
    attribute(buffer, kind | NLA_F_NESTED, inner);
}

/// One batch for `transaction`, its messages numbered from `sequence`:
/// the bytes and the sequence number of its last set message. `None`
/// when it does not qualify: rules to write, more than
/// [`MAX_NETLINK_ELEMENTS`] changes, an element of an interval set, or
/// one [`element_key_bytes`] cannot carry. Removals come before
/// additions, as in the script.
pub fn netlink_batch(transaction: &Transaction, sequence: u32) -> Option<(Vec<u8>, u32)> {
    let count = transaction.remove.len() + transaction.add.len();
    if !transaction.rules.is_empty() || count == 0 || count > MAX_NETLINK_ELEMENTS {
        return None;
    }
    type Groups = BTreeMap<(NetfilterFamily, NetfilterSet), Vec<Vec<u8>>>;
    let mut groups: [Groups; 2] = [Groups::new(), Groups::new()];
    for (group, elements) in groups
        .iter_mut()
        .zip([&transaction.remove, &transaction.add])
    {
        for element in elements {
            let (_, _, interval) = expected_key(element.family, element.set);
            if interval {
                return None;
            }
            group
                .entry((element.family, element.set))
                .or_default()
                .push(element_key_bytes(element)?);
        }
    }
    let subsystem = [0, 0, 0, NFNL_SUBSYS_NFTABLES as u8];
    let mut buffer = Vec::new();
    let mut sequence = sequence;
    let start = header(
        &mut buffer,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        sequence,
        subsystem,
    );
    finish(&mut buffer, start);
    let table = string_value(NETFILTER_TABLE);
    for (group, (message, flags)) in groups.iter().zip([
        (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK),
        (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE),
    ]) {
        for ((family, set), keys) in group {
            sequence = sequence.wrapping_add(1);
            let start = header(
                &mut buffer,
                (NFNL_SUBSYS_NFTABLES << 8) | message,
                flags,
                sequence,
                [nfproto(*family), 0, 0, 0],
            );
            attribute(&mut buffer, NFTA_SET_ELEM_LIST_TABLE, &table);
            attribute(
                &mut buffer,
                NFTA_SET_ELEM_LIST_SET,
                &string_value(set.name()),
            );
            let mut list = Vec::new();
            for key in keys {
                let mut value = Vec::new();
                attribute(&mut value, NFTA_DATA_VALUE, key);
                let mut element = Vec::new();
                nested(&mut element, NFTA_SET_ELEM_KEY, &value);
                nested(&mut list, NFTA_LIST_ELEM, &element);
            }
            nested(&mut buffer, NFTA_SET_ELEM_LIST_ELEMENTS, &list);
            finish(&mut buffer, start);
        }
    }
    let last = sequence;
    let start = header(
        &mut buffer,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        sequence.wrapping_add(1),
        subsystem,
    );
    finish(&mut buffer, start);
    Some((buffer, last))
}

/// Whether a batch can carry `element`: not of an interval set, and a
/// key [`element_key_bytes`] can write.
fn batchable(element: &SetElement) -> bool {
    let (_, _, interval) = expected_key(element.family, element.set);
    !interval && element_key_bytes(element).is_some()
}

/// `transaction` as the parts sent to the kernel, in order, each all or
/// none. Up to [`MAX_NETLINK_ELEMENTS`] element changes stay one part
/// (one batch when [`netlink_batch`] takes it, else one script). A
/// larger one (a first sync) becomes: the rules and the elements a batch
/// cannot carry, as script parts of at most `max_script_elements`
/// ([`Transaction::split`]: removals before additions); then the rest as
/// batches of at most [`MAX_NETLINK_ELEMENTS`], removals first. Why: at
/// 20,000 Services a first sync's 240,000 elements were 15 `nft -f`
/// processes and about 11 s of the sync in the guest, most of it nft
/// parsing its script (issue 16, P1); as batches they skip the text.
pub fn parts(transaction: Transaction, max_script_elements: usize) -> Vec<Transaction> {
    if transaction.remove.len() + transaction.add.len() <= MAX_NETLINK_ELEMENTS {
        return transaction.split(max_script_elements);
    }
    let (remove_batch, remove_script): (Vec<SetElement>, Vec<SetElement>) =
        transaction.remove.into_iter().partition(batchable);
    let (add_batch, add_script): (Vec<SetElement>, Vec<SetElement>) =
        transaction.add.into_iter().partition(batchable);
    let script = Transaction {
        rules: transaction.rules,
        remove: remove_script,
        add: add_script,
    };
    let batches = Transaction {
        rules: Vec::new(),
        remove: remove_batch,
        add: add_batch,
    };
    script
        .split(max_script_elements)
        .into_iter()
        .chain(batches.split(MAX_NETLINK_ELEMENTS))
        .filter(|part| !part.is_empty())
        .collect()
}

/// The answers in one datagram: (sequence, errno; 0 is an ACK).
pub fn answers(bytes: &[u8]) -> Vec<(u32, i32)> {
    let mut found = Vec::new();
    let mut at = 0;
    while at + NETLINK_HEADER <= bytes.len() {
        let word = |from: usize| -> [u8; 4] {
            bytes
                .get(from..from + 4)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0; 4])
        };
        let length = u32::from_ne_bytes(word(at)) as usize;
        if length < NETLINK_HEADER || at + length > bytes.len() {
            break;
        }
        let kind = u16::from_ne_bytes([bytes[at + 4], bytes[at + 5]]);
        let sequence = u32::from_ne_bytes(word(at + 8));
        if kind == NLMSG_ERROR && length >= NETLINK_HEADER + 4 {
            let error = i32::from_ne_bytes(word(at + NETLINK_HEADER));
            found.push((sequence, error.checked_neg().unwrap_or(i32::MAX)));
        }
        at += (length + 3) & !3;
    }
    found
}

/// Sends `transaction` as one batch when it qualifies ([`netlink_batch`])
/// and waits for the kernel's answer: `Ok(false)` when it does not
/// qualify (nothing was sent), `Ok(true)` when the kernel committed it,
/// an error naming the errno when it refused it (and so applied none).
/// Blocking.
pub fn send_batch_blocking(transaction: &Transaction) -> Result<bool, NetfilterError> {
    const FIRST: u32 = 1;
    let Some((bytes, last)) = netlink_batch(transaction, FIRST) else {
        return Ok(false);
    };
    let io_error = |error| NetfilterError::Netlink {
        what: "sending set elements".into(),
        error,
    };
    let socket = open_socket().map_err(io_error)?;
    socket.send(&bytes, 0).map_err(io_error)?;
    let mut buffer = vec![0u8; 1 << 16];
    let mut refused = None;
    loop {
        let size = socket.recv(&mut &mut buffer[..], 0).map_err(io_error)?;
        for (sequence, errno) in answers(&buffer[..size]) {
            if errno != 0 && refused.is_none() {
                refused = Some(errno);
            }
            // The last message's answer comes last; a batch refused as a
            // whole is answered for its first message only.
            let batch_refused = sequence == FIRST && errno != 0;
            if sequence == last || batch_refused {
                return match refused {
                    None => Ok(true),
                    Some(errno) => Err(NetfilterError::Refused {
                        what: format!(
                            "changing {} set elements",
                            transaction.remove.len() + transaction.add.len()
                        ),
                        errno,
                    }),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::netfilter::SetElements;
    use crate::system::netfilter::read::decode_elements;
    use netlink_ipvs::IpvsProtocol;

    fn element(family: NetfilterFamily, set: NetfilterSet, key: ElementKey) -> SetElement {
        SetElement { family, set, key }
    }

    fn samples() -> Vec<SetElement> {
        use NetfilterFamily::{Ipv4, Ipv6};
        let v4 = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
        vec![
            element(
                Ipv4,
                NetfilterSet::ClusterIps,
                ElementKey::Service {
                    address: v4("10.96.0.10"),
                    protocol: IpvsProtocol::Udp,
                    port: 53,
                },
            ),
            element(
                Ipv6,
                NetfilterSet::ClusterIps,
                ElementKey::Service {
                    address: v4("fd00::10"),
                    protocol: IpvsProtocol::Tcp,
                    port: 443,
                },
            ),
            element(
                Ipv4,
                NetfilterSet::NodePorts,
                ElementKey::ProtocolPort {
                    protocol: IpvsProtocol::Sctp,
                    port: 30000,
                },
            ),
            element(
                Ipv4,
                NetfilterSet::HealthCheckPorts,
                ElementKey::Port(32000),
            ),
            element(
                Ipv4,
                NetfilterSet::Hairpin,
                ElementKey::AddressPair(v4("10.244.1.5")),
            ),
            element(
                Ipv4,
                NetfilterSet::Vips,
                ElementKey::Address(v4("10.96.0.1")),
            ),
            element(Ipv6, NetfilterSet::Vips, ElementKey::Address(v4("fd00::1"))),
        ]
    }

    /// Walks a batch: (message type, flags, sequence, nfgen family, attributes).
    fn messages(bytes: &[u8]) -> Vec<(u16, u16, u32, u8, Vec<u8>)> {
        let mut found = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let length = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes([bytes[at + 4], bytes[at + 5]]);
            let flags = u16::from_ne_bytes([bytes[at + 6], bytes[at + 7]]);
            let sequence = u32::from_ne_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            let family = bytes[at + 16];
            found.push((
                kind,
                flags,
                sequence,
                family,
                bytes[at + 20..at + length].to_vec(),
            ));
            at += (length + 3) & !3;
        }
        found
    }

    /// The `NFTA_SET_ELEM_LIST_SET` of a message's attributes.
    fn set_name(attributes: &[u8]) -> String {
        let mut at = 0;
        while at + 4 <= attributes.len() {
            let length = usize::from(u16::from_ne_bytes([attributes[at], attributes[at + 1]]));
            let kind = u16::from_ne_bytes([attributes[at + 2], attributes[at + 3]]);
            if kind == NFTA_SET_ELEM_LIST_SET {
                let value = &attributes[at + 4..at + length];
                return String::from_utf8_lossy(&value[..value.len() - 1]).into_owned();
            }
            at += (length + 3) & !3;
        }
        String::new()
    }

    #[test]
    fn keys_decode_back_to_the_same_elements() {
        for sample in samples() {
            let key = element_key_bytes(&sample).expect("encodable");
            let (_, length, _) = expected_key(sample.family, sample.set);
            assert_eq!(key.len(), length as usize, "{sample:?}");
            let decoded = crate::system::netfilter::read::decode_element(
                sample.family,
                sample.set,
                &key,
                None,
            );
            assert_eq!(decoded, Some(sample.key), "{sample:?}");
        }
    }

    #[test]
    fn keys_the_batch_cannot_carry() {
        let v4: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let cases = [
            // an address of the other family
            element(
                NetfilterFamily::Ipv6,
                NetfilterSet::Vips,
                ElementKey::Address(v4),
            ),
            // a protocol number above 255
            element(
                NetfilterFamily::Ipv4,
                NetfilterSet::NodePorts,
                ElementKey::ProtocolPort {
                    protocol: IpvsProtocol::Other(300),
                    port: 1,
                },
            ),
            // a range (the interval set)
            element(
                NetfilterFamily::Ipv4,
                NetfilterSet::FirewallAllow,
                ElementKey::ServiceSource {
                    address: v4,
                    protocol: IpvsProtocol::Tcp,
                    port: 80,
                    first: v4,
                    last: v4,
                },
            ),
        ];
        for case in cases {
            assert_eq!(element_key_bytes(&case), None, "{case:?}");
            let transaction = Transaction {
                add: vec![case],
                ..Transaction::default()
            };
            assert!(netlink_batch(&transaction, 1).is_none());
        }
    }

    #[test]
    fn a_batch_is_begin_removals_additions_end_and_decodes_back() {
        let all = samples();
        let transaction = Transaction {
            rules: Vec::new(),
            remove: vec![all[4], all[0]],
            add: all.clone(),
        };
        let (bytes, last) = netlink_batch(&transaction, 7).expect("qualifies");
        let messages = messages(&bytes);
        let kinds: Vec<u16> = messages.iter().map(|m| m.0).collect();
        let del = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM;
        let new = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM;
        // Removals: two IPv4 sets; additions: seven (family, set) groups.
        assert_eq!(
            kinds,
            [
                vec![NFNL_MSG_BATCH_BEGIN, del, del],
                vec![new; 7],
                vec![NFNL_MSG_BATCH_END]
            ]
            .concat()
        );
        let sequences: Vec<u32> = messages.iter().map(|m| m.2).collect();
        assert_eq!(sequences, (7..=17).collect::<Vec<u32>>());
        assert_eq!(last, 16);
        assert_eq!(messages[0].1, NLM_F_REQUEST);
        assert_eq!(messages[3].1, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE);
        assert_eq!(messages[1].1, NLM_F_REQUEST | NLM_F_ACK);
        // The batch messages name the nf_tables subsystem (res_id, big-endian).
        assert_eq!(&bytes[16..20], &[0, 0, 0, 10]);
        let mut removed = SetElements::new();
        let mut added = SetElements::new();
        for (kind, _, _, family_number, attributes) in &messages[1..messages.len() - 1] {
            let family = if *family_number == 2 {
                NetfilterFamily::Ipv4
            } else {
                NetfilterFamily::Ipv6
            };
            let name = set_name(attributes);
            let set = NetfilterSet::from_name(&name).expect("one of the agent's sets");
            let into = if *kind == del {
                &mut removed
            } else {
                &mut added
            };
            assert!(!decode_elements(family, set, attributes, into), "decodable");
        }
        assert_eq!(removed, transaction.remove.iter().copied().collect());
        assert_eq!(added, transaction.add.iter().copied().collect());
    }

    #[test]
    fn big_or_rule_writing_transactions_go_to_nft() {
        let vip = |n: u32| {
            element(
                NetfilterFamily::Ipv4,
                NetfilterSet::Vips,
                ElementKey::Address(std::net::Ipv4Addr::from(0x0a60_0000 + n).into()),
            )
        };
        let at_most = Transaction {
            add: (0..MAX_NETLINK_ELEMENTS as u32).map(vip).collect(),
            ..Transaction::default()
        };
        assert!(netlink_batch(&at_most, 1).is_some());
        let above = Transaction {
            add: (0..=MAX_NETLINK_ELEMENTS as u32).map(vip).collect(),
            ..Transaction::default()
        };
        assert!(netlink_batch(&above, 1).is_none());
        assert!(netlink_batch(&Transaction::default(), 1).is_none());
        let rules = Transaction {
            rules: vec![(NetfilterFamily::Ipv4, Default::default())],
            add: vec![vip(1)],
            ..Transaction::default()
        };
        assert!(netlink_batch(&rules, 1).is_none());
    }

    #[test]
    fn large_transactions_are_a_script_of_rules_and_ranges_then_batches() {
        let vip = |n: u32| {
            element(
                NetfilterFamily::Ipv4,
                NetfilterSet::Vips,
                ElementKey::Address(std::net::Ipv4Addr::from(0x0a60_0000 + n).into()),
            )
        };
        let v4: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let range = element(
            NetfilterFamily::Ipv4,
            NetfilterSet::FirewallAllow,
            ElementKey::ServiceSource {
                address: v4,
                protocol: IpvsProtocol::Tcp,
                port: 80,
                first: v4,
                last: v4,
            },
        );
        let rules = vec![(NetfilterFamily::Ipv4, Default::default())];
        // At most MAX_NETLINK_ELEMENTS changes: one part, whatever it holds.
        let small = Transaction {
            rules: rules.clone(),
            remove: Vec::new(),
            add: [vec![range], (0..10).map(vip).collect()].concat(),
        };
        assert_eq!(parts(small.clone(), 16_384), vec![small]);

        // Larger: the rules and the range by script, the rest in batches,
        // removals first, nothing lost or reordered.
        let removed: Vec<SetElement> = (0..1100).map(vip).collect();
        let added: Vec<SetElement> = (2000..4500).map(vip).collect();
        let large = Transaction {
            rules: rules.clone(),
            remove: removed.clone(),
            add: [vec![range], added.clone()].concat(),
        };
        let split = parts(large, 16_384);
        let shapes: Vec<(usize, usize, usize)> = split
            .iter()
            .map(|part| (part.rules.len(), part.remove.len(), part.add.len()))
            .collect();
        assert_eq!(
            shapes,
            [
                (1, 0, 1),
                (0, 1024, 0),
                (0, 76, 948),
                (0, 0, 1024),
                (0, 0, 528)
            ]
        );
        assert_eq!(split[0].add, vec![range]);
        let batched_removals: Vec<SetElement> =
            split[1..].iter().flat_map(|p| p.remove.clone()).collect();
        let batched_additions: Vec<SetElement> =
            split[1..].iter().flat_map(|p| p.add.clone()).collect();
        assert_eq!(batched_removals, removed);
        assert_eq!(batched_additions, added);
        for part in &split[1..] {
            assert!(netlink_batch(part, 1).is_some(), "each batch qualifies");
        }
        // The script part's elements are still bounded.
        let many_ranges = Transaction {
            rules,
            remove: Vec::new(),
            add: vec![range; 2000],
        };
        let shapes: Vec<(usize, usize)> = parts(many_ranges, 1500)
            .iter()
            .map(|part| (part.rules.len(), part.add.len()))
            .collect();
        assert_eq!(shapes, [(1, 1500), (0, 500)]);
    }

    #[test]
    fn answers_are_acks_and_errors_by_sequence() {
        // Two nlmsgerr messages as the kernel sends them: an ACK for
        // sequence 2 and ENOENT (-2) for sequence 3, each echoing a
        // 16-byte header of the request.
        let mut bytes = Vec::new();
        for (sequence, error) in [(2u32, 0i32), (3, -2)] {
            bytes.extend(36u32.to_ne_bytes());
            bytes.extend(NLMSG_ERROR.to_ne_bytes());
            bytes.extend(0u16.to_ne_bytes());
            bytes.extend(sequence.to_ne_bytes());
            bytes.extend(0u32.to_ne_bytes());
            bytes.extend(error.to_ne_bytes());
            bytes.extend([0u8; 16]);
        }
        assert_eq!(answers(&bytes), vec![(2, 0), (3, 2)]);
        assert_eq!(answers(&bytes[..20]), vec![]);
    }
}
