// SPDX-License-Identifier: MIT

//! The netlink wire, as the client's sockets see it: header sizes, message
//! types, the command-level attribute kinds the hand-written paths use,
//! buffer sizes, errno values, and the one walk over the messages of a
//! received datagram.
//!
//! Everything here is plain data or a pure function: it depends on no
//! other file of the client.

use netlink_packet_core::NetlinkBuffer;

pub(crate) use netlink_packet_core::{NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN};
pub(crate) use netlink_packet_generic::constants::GENL_HDRLEN;

/// The netlink message header: length, type, flags, sequence, port id.
pub(crate) const NLMSG_HDRLEN: usize = 16;

/// `IPVS_CMD_ATTR_SERVICE`: a service nest.
pub(crate) const IPVS_CMD_ATTR_SERVICE: u16 = 1;
/// `IPVS_CMD_ATTR_DEST`.
pub(crate) const IPVS_CMD_ATTR_DEST: u16 = 2;

/// The receive buffer asked for. The kernel caps it at
/// `net.core.rmem_max` (and doubles it); every pipelined request's ACK
/// waits in it until read, so it bounds how many requests can be in flight.
pub(crate) const RECEIVE_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// The receive buffer a blocking dump socket asks for: a dump part is read
/// as soon as it is queued.
pub(crate) const DUMP_RECEIVE_BUFFER_BYTES: usize = 1024 * 1024;

/// The room kept for one datagram: the batch socket's send and receive
/// buffers start with this capacity, and a dump socket receives into a
/// buffer this long.
pub(crate) const DATAGRAM_BUFFER_BYTES: usize = 64 * 1024;

/// `ENOENT`.
pub(crate) const ENOENT: i32 = 2;
/// `ESRCH`.
pub(crate) const ESRCH: i32 = 3;
/// `EEXIST`.
pub(crate) const EEXIST: i32 = 17;
/// `ENOBUFS`: the socket's receive buffer overran and messages were lost.
pub(crate) const ENOBUFS: i32 = 105;

/// Walks the netlink messages of a received datagram, in order.
///
/// Each message whose header is whole and whose length field fits in what
/// is left is yielded as a checked [`NetlinkBuffer`] over exactly its bytes
/// (header included: `into_inner()` is the whole message), which gives its
/// length, type, flags, sequence number and payload; the walk then steps
/// over it, padded to 4 bytes. Bytes left over that do not make a message
/// (shorter than a header, or a length that does not fit) are yielded once
/// as `Err(rest)`, and the walk ends there.
pub(crate) fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram }
}

/// The walk of [`messages`].
#[derive(Debug, Clone)]
pub(crate) struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<NetlinkBuffer<&'a [u8]>, &'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        let Ok(header) = NetlinkBuffer::new_checked(rest) else {
            return Some(Err(rest));
        };
        let length = header.length() as usize;
        let step = length.next_multiple_of(4);
        self.rest = rest.get(step..).unwrap_or_default();
        Some(Ok(NetlinkBuffer::new(&rest[..length])))
    }
}

/// The error code of an `NLMSG_ERROR` message: 0 for an ACK, else the
/// negative errno; `None` when its payload is too short to hold one.
pub(crate) fn error_code(message: &NetlinkBuffer<&[u8]>) -> Option<i32> {
    let code = message.payload().get(..4)?;
    Some(i32::from_ne_bytes([code[0], code[1], code[2], code[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
        let length = NLMSG_HDRLEN + payload.len();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(length as u32).to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&0u16.to_ne_bytes());
        bytes.extend_from_slice(&sequence.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn walks_each_message_padded_to_four_bytes() {
        let mut datagram = message(0x20, 7, &[1, 2, 3]);
        let first = datagram.len();
        datagram.resize(first.next_multiple_of(4), 0);
        datagram.extend(message(NLMSG_ERROR, 8, &(-17i32).to_ne_bytes()));
        let mut walk = messages(&datagram);
        let Some(Ok(reply)) = walk.next() else {
            panic!("the first message is whole")
        };
        assert_eq!(reply.message_type(), 0x20);
        assert_eq!(reply.sequence_number(), 7);
        assert_eq!(reply.payload(), &[1, 2, 3]);
        assert_eq!(reply.into_inner(), &datagram[..first]);
        let Some(Ok(reply)) = walk.next() else {
            panic!("the second message is whole")
        };
        assert_eq!(reply.message_type(), NLMSG_ERROR);
        assert_eq!(error_code(&reply), Some(-17));
        assert!(walk.next().is_none());
    }

    #[test]
    fn an_unpadded_last_message_ends_the_walk() {
        let datagram = message(NLMSG_DONE, 1, &[0, 0]);
        let walked: Vec<_> = messages(&datagram).collect();
        assert_eq!(walked.len(), 1);
        assert!(walked[0].is_ok());
    }

    #[test]
    fn a_malformed_tail_is_yielded_once_and_ends_the_walk() {
        let mut datagram = message(NLMSG_NOOP, 1, &[]);
        datagram.extend_from_slice(&[9; 10]);
        let mut walk = messages(&datagram);
        assert!(walk.next().unwrap().is_ok());
        assert_eq!(walk.next().unwrap().err(), Some(&[9u8; 10][..]));
        assert!(walk.next().is_none());

        let mut too_long = message(NLMSG_ERROR, 1, &[0; 4]);
        too_long[0] = 200;
        assert_eq!(
            messages(&too_long).next().unwrap().err(),
            Some(too_long.as_slice())
        );
        assert!(error_code(&NetlinkBuffer::new(&message(NLMSG_ERROR, 1, &[0; 3])[..])).is_none());
    }
}
