//! IPVS generic-netlink messages as the kernel sends them (dump replies,
//! errors, ACKs): whatever the bytes, decoding ends in a value or an
//! error, never a panic. What decodes must re-encode and decode to the
//! same message; each service and real-server nest must turn into the
//! typed model or an error; the fast real-server decoder the table readers
//! use must agree with the attribute path; and the ipvsadm text of what
//! decoded is printed in full. Seeds: the nlmon captures of
//! netlink-ipvs/tests/captures/.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netlink_ipvs::format::{format_list, format_save, sort_table, IpvsListOptions};
use netlink_ipvs::{
    IpvsAddressFamily, IpvsAttribute, IpvsCounters, IpvsDestination, IpvsInfo, IpvsMessage,
    IpvsService, IpvsTableEntry,
};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NlasIterator, NLA_TYPE_MASK};
use netlink_packet_generic::GenlMessage;

const NLMSG_HDRLEN: usize = 16;
const GENL_HDRLEN: usize = 4;
const IPVS_CMD_ATTR_DEST: u16 = 2;

fuzz_target!(|bytes: &[u8]| {
    let Ok(message) = NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(bytes) else {
        return;
    };
    // Re-encoding what decoded is stable: the bytes of one round decode
    // and encode to themselves. (Not decode(emit(m)) == m: an attribute
    // this crate does not know, with both NLA_F_NESTED and
    // NLA_F_NET_BYTEORDER set, comes back with its flags in its kind.)
    let emit = |message: &mut NetlinkMessage<GenlMessage<IpvsMessage>>| {
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        bytes
    };
    let mut message = message;
    let once = emit(&mut message);
    let mut again = NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(&once)
        .expect("an emitted message decodes");
    assert_eq!(emit(&mut again), once, "emit(decode(emit(decode(bytes))))");

    let NetlinkPayload::InnerMessage(genl) = &message.payload else {
        return;
    };
    let mut services = Vec::new();
    let mut slow = Vec::new();
    for attribute in &genl.payload.attributes {
        match attribute {
            IpvsAttribute::Service(nlas) => {
                if let Ok(service) = IpvsService::from_attributes(nlas) {
                    services.push(service);
                }
            }
            IpvsAttribute::Dest(nlas) => {
                for family in [IpvsAddressFamily::Inet, IpvsAddressFamily::Inet6] {
                    slow.push((family, IpvsDestination::from_attributes(nlas, family).ok()));
                }
            }
            _ => {}
        }
    }

    // The table readers' decoder, straight from the bytes.
    let mut fast = Vec::new();
    if let Some(attributes) = bytes.get(NLMSG_HDRLEN + GENL_HDRLEN..) {
        for nla in NlasIterator::new(attributes) {
            let Ok(nla) = nla else { break };
            if nla.kind() & NLA_TYPE_MASK == IPVS_CMD_ATTR_DEST {
                for family in [IpvsAddressFamily::Inet, IpvsAddressFamily::Inet6] {
                    fast.push((
                        family,
                        IpvsDestination::decode_nest(nla.value(), family, IpvsCounters::Keep).ok(),
                    ));
                }
            }
        }
    }
    // Where the whole message decoded both ways, a real server the
    // attribute path accepts is the one the fast path gives.
    if fast.len() == slow.len() {
        for ((family, slow), (_, fast)) in slow.iter().zip(&fast) {
            if let Some(slow) = slow {
                assert_eq!(
                    Some(slow),
                    fast.as_ref(),
                    "real server of family {family:?}"
                );
            }
        }
    }

    let destinations: Vec<IpvsDestination> = slow
        .into_iter()
        .filter_map(|(_, destination)| destination)
        .collect();
    let mut table: Vec<IpvsTableEntry> = services
        .into_iter()
        .map(|service| IpvsTableEntry {
            service,
            destinations: destinations.clone(),
        })
        .collect();
    sort_table(&mut table);
    let info = IpvsInfo {
        version: 0x010201,
        connection_table_size: 4096,
    };
    for options in [
        IpvsListOptions::default(),
        IpvsListOptions {
            stats: true,
            thresholds: true,
            persistent_conn: true,
            tun_info: true,
            exact: true,
            ..IpvsListOptions::default()
        },
        IpvsListOptions {
            rate: true,
            ..IpvsListOptions::default()
        },
    ] {
        let _ = format_list(&info, &table, &options);
    }
    let _ = format_save(&table);
});
