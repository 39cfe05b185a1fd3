//! Adding and removing many addresses on one link in few syscalls.
//!
//! One rtnetlink request per VIP, each waiting for its ACK, is how
//! kube-proxy binds addresses; with 20,000 Services that is 40,000
//! syscalls before the kernel has done any work. Here the requests are
//! packed into datagrams (the kernel runs every message of a datagram in
//! one `sendmsg`), and only each datagram's last message asks for an ACK:
//! the kernel answers a failed message with an error whether or not an ACK
//! was asked for, so no failure goes unseen.
//!
//! [`encode_address_datagrams`] is pure; [`send_address_datagrams`] is the
//! blocking exchange (run it with `spawn_blocking`). Adding an address
//! that is there (`EEXIST`) and removing one that is gone
//! (`EADDRNOTAVAIL`) are races another writer won: success.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::errno::{EADDRNOTAVAIL, EEXIST};

const NLMSG_ERROR: u16 = 2;

/// How many address messages go in one datagram (each is under 64 bytes;
/// the kernel's answers for a whole datagram of failures fit the socket's
/// receive buffer).
pub const ADDRESSES_PER_DATAGRAM: usize = 256;

/// One change to a link's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressRequest {
    /// Add the address as a host address (/32 or /128).
    Add(IpAddr),
    /// Remove the host address.
    Remove(IpAddr),
}

impl AddressRequest {
    fn address(&self) -> IpAddr {
        match self {
            Self::Add(address) | Self::Remove(address) => *address,
        }
    }

    /// The kernel's answer that means the work was already done.
    fn already_done(&self, errno: i32) -> bool {
        match self {
            Self::Add(_) => errno == EEXIST,
            Self::Remove(_) => errno == EADDRNOTAVAIL,
        }
    }

    /// What was asked, for an error (`adding 10.96.0.10/32 to kube-ipvs0`).
    pub fn describe(&self, link: &str) -> String {
        let address = self.address();
        let prefix = if address.is_ipv4() { 32 } else { 128 };
        match self {
            Self::Add(_) => format!("adding {address}/{prefix} to {link}"),
            Self::Remove(_) => format!("removing {address}/{prefix} from {link}"),
        }
    }
}

/// The rtnetlink message for `request` on the link with index `index`:
/// what `ip address add|del ADDRESS/32 dev LINK` sends (IPv6 without
/// duplicate address detection, so a VIP is usable at once).
pub fn address_message(index: u32, request: &AddressRequest) -> RouteNetlinkMessage {
    let address = request.address();
    let mut message = AddressMessage::default();
    message.header.index = index;
    (message.header.family, message.header.prefix_len) = match address {
        IpAddr::V4(_) => (AddressFamily::Inet, 32),
        IpAddr::V6(_) => (AddressFamily::Inet6, 128),
    };
    message.attributes.push(AddressAttribute::Local(address));
    message.attributes.push(AddressAttribute::Address(address));
    match request {
        AddressRequest::Add(IpAddr::V6(_)) => {
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
            RouteNetlinkMessage::NewAddress(message)
        }
        AddressRequest::Add(IpAddr::V4(_)) => RouteNetlinkMessage::NewAddress(message),
        AddressRequest::Remove(_) => RouteNetlinkMessage::DelAddress(message),
    }
}

/// The header flags of `request` without the ACK flag: what `ip address
/// add` (create, fail if present) and `ip address del` send.
fn request_flags(request: &AddressRequest) -> u16 {
    match request {
        AddressRequest::Add(_) => NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
        AddressRequest::Remove(_) => NLM_F_REQUEST,
    }
}

/// Requests packed into datagrams of at most `per_datagram` messages.
/// Message `i` of `requests` has sequence number `i + 1`; only the last
/// message of each datagram asks for an ACK.
pub fn encode_address_datagrams(
    index: u32,
    requests: &[AddressRequest],
    per_datagram: usize,
) -> Vec<Vec<u8>> {
    let mut sequence = 0u32;
    requests
        .chunks(per_datagram.max(1))
        .map(|chunk| {
            let mut datagram = Vec::with_capacity(chunk.len() * 64);
            for (position, request) in chunk.iter().enumerate() {
                sequence += 1;
                let mut message = NetlinkMessage::from(address_message(index, request));
                message.header.flags = request_flags(request);
                if position + 1 == chunk.len() {
                    message.header.flags |= NLM_F_ACK;
                }
                message.header.sequence_number = sequence;
                message.finalize();
                let start = datagram.len();
                datagram.resize(start + message.buffer_len(), 0);
                message.serialize(&mut datagram[start..]);
            }
            datagram
        })
        .collect()
}

/// A request the kernel refused: which one (its position in the list) and
/// the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedAddress {
    /// Index into the requests.
    pub position: usize,
    /// The kernel's errno.
    pub errno: i32,
}

/// Sends `requests` (encoded by [`encode_address_datagrams`] with the same
/// `per_datagram`) over a new rtnetlink socket, one datagram at a time,
/// reading the answers to each before the next. Returns the requests the
/// kernel refused, not counting those already done (`EEXIST` on add,
/// `EADDRNOTAVAIL` on remove).
pub fn send_address_datagrams(
    index: u32,
    requests: &[AddressRequest],
    per_datagram: usize,
) -> io::Result<Vec<RefusedAddress>> {
    let per_datagram = per_datagram.max(1);
    let datagrams = encode_address_datagrams(index, requests, per_datagram);
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    // Errors echo only the header, not the whole request.
    let _ = socket.set_cap_ack(true);
    let _ = socket.set_rx_buf_sz(1024 * 1024);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut refused = Vec::new();
    for (number, datagram) in datagrams.iter().enumerate() {
        socket.send(datagram, 0)?;
        let last = (number * per_datagram + per_datagram).min(requests.len()) as u32;
        'answers: loop {
            let length = socket.recv(&mut &mut buffer[..], 0)?;
            let mut rest = &buffer[..length];
            while let Ok(message) = NetlinkBuffer::new_checked(rest) {
                let sequence = message.sequence_number();
                if message.message_type() == NLMSG_ERROR && message.payload().len() >= 4 {
                    let code =
                        i32::from_ne_bytes(message.payload()[..4].try_into().expect("four bytes"));
                    let position = sequence.wrapping_sub(1) as usize;
                    if code != 0 {
                        if let Some(request) = requests.get(position) {
                            if !request.already_done(-code) {
                                refused.push(RefusedAddress {
                                    position,
                                    errno: -code,
                                });
                            }
                        }
                    }
                    if sequence == last {
                        break 'answers;
                    }
                }
                let step = (message.length() as usize + 3) & !3;
                if step == 0 || step >= rest.len() {
                    break;
                }
                rest = &rest[step..];
            }
        }
    }
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkPayload;

    fn decode(datagram: &[u8]) -> Vec<NetlinkMessage<RouteNetlinkMessage>> {
        let mut messages = Vec::new();
        let mut rest = datagram;
        while !rest.is_empty() {
            let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest).unwrap();
            let length = message.header.length as usize;
            messages.push(message);
            rest = &rest[length..];
        }
        messages
    }

    #[test]
    fn requests_are_packed_with_an_ack_on_each_datagrams_last_message_only() {
        let requests: Vec<AddressRequest> = [
            "10.96.0.1",
            "10.96.0.2",
            "fd00::1",
            "10.96.0.3",
            "10.96.0.4",
        ]
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let address = a.parse().unwrap();
            if i == 3 {
                AddressRequest::Remove(address)
            } else {
                AddressRequest::Add(address)
            }
        })
        .collect();
        let datagrams = encode_address_datagrams(7, &requests, 2);
        assert_eq!(datagrams.len(), 3);
        let messages: Vec<_> = datagrams.iter().flat_map(|d| decode(d)).collect();
        assert_eq!(messages.len(), 5);
        for (position, message) in messages.iter().enumerate() {
            assert_eq!(message.header.sequence_number, position as u32 + 1);
            let acked = message.header.flags & NLM_F_ACK != 0;
            assert_eq!(acked, position % 2 == 1 || position == 4, "{position}");
            let expected = if position == 3 {
                NLM_F_REQUEST
            } else {
                NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL
            };
            assert_eq!(message.header.flags & !NLM_F_ACK, expected, "{position}");
            let NetlinkPayload::InnerMessage(inner) = &message.payload else {
                panic!("not an rtnetlink message")
            };
            assert_eq!(*inner, address_message(7, &requests[position]));
        }
    }

    #[test]
    fn messages_are_what_ip_address_sends() {
        let v4 = address_message(3, &AddressRequest::Add("10.96.0.10".parse().unwrap()));
        let RouteNetlinkMessage::NewAddress(message) = &v4 else {
            panic!("{v4:?}")
        };
        assert_eq!(message.header.index, 3);
        assert_eq!(message.header.prefix_len, 32);
        assert_eq!(message.header.family, AddressFamily::Inet);
        assert!(!message
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Flags(_))));

        let v6 = address_message(3, &AddressRequest::Add("fd00::10".parse().unwrap()));
        let RouteNetlinkMessage::NewAddress(message) = &v6 else {
            panic!("{v6:?}")
        };
        assert_eq!(message.header.prefix_len, 128);
        assert!(message
            .attributes
            .contains(&AddressAttribute::Flags(AddressFlags::Nodad)));

        let removal = address_message(3, &AddressRequest::Remove("fd00::10".parse().unwrap()));
        assert!(matches!(removal, RouteNetlinkMessage::DelAddress(_)));
        assert_eq!(
            AddressRequest::Remove("fd00::10".parse().unwrap()).describe("kube-ipvs0"),
            "removing fd00::10/128 from kube-ipvs0"
        );
        assert!(AddressRequest::Add("10.0.0.1".parse().unwrap()).already_done(EEXIST));
        assert!(!AddressRequest::Add("10.0.0.1".parse().unwrap()).already_done(EADDRNOTAVAIL));
    }
}
